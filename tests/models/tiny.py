# mypy: disable-error-code="no-untyped-call"
"""Tiny randomly initialised VLMs of the real architectures, built offline.

Each builder trains a 400-token byte-level BPE tokenizer on a few sentences,
builds the real processor and model classes with toy sizes, and writes them
with ``save_pretrained`` so that tests load them back through the production
path (``models.local_vlm``).  Recipe: ``shared/notes/tiny-vlm-recipe.md``.
Outputs of random weights are garbage: tests check structure and plumbing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CORPUS = [
    "The lungs are clear. No pleural effusion or pneumothorax. Heart size is normal.",
    '{"findings": [{"label": "effusion", "text": "small left effusion", "presence": "present"}],',
    '"impression": "No acute cardiopulmonary process.", "recommendation": ""}',
    "Describe lungs, pleura, heart size, mediastinum, bones and devices. Indication: cough.",
] * 20

MAX_POS = 8192


def _tokenizer(specials: list[str], **kw: Any) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(
        CORPUS,
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    return PreTrainedTokenizerFast(tokenizer_object=raw, padding_side="left", **kw)


GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>"
    "{{ 'model' if m['role']=='assistant' else m['role'] }}{{ '\n' }}{% for c in m['content'] %}"
    "{% if c['type']=='image' %}<start_of_image>{% elif c['type']=='text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}<end_of_turn>{{ '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model{{ '\n' }}{% endif %}"
)

LLAVA_TEMPLATE = (
    "{% for m in messages %}{{ 'USER: ' if m['role']=='user' else 'ASSISTANT: ' }}"
    "{% for c in m['content'] %}{% if c['type']=='image' %}<image>\n{% elif c['type']=='text' %}{{ c['text'] }}"
    "{% endif %}{% endfor %}{{ ' ' if m['role']=='user' else eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

QWEN_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for c in m['content'] %}{% if c['type']=='image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type']=='text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_gemma3(out_dir: Path, *, hidden: int = 32, layers: int = 2) -> Path:
    import torch
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor, SiglipVisionConfig
    from transformers.models.gemma3.configuration_gemma3 import Gemma3TextConfig
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    specials = [
        "<pad>",
        "<eos>",
        "<bos>",
        "<unk>",
        "<start_of_turn>",
        "<end_of_turn>",
        "<start_of_image>",
        "<end_of_image>",
        "<image_soft_token>",
    ]
    tok = _tokenizer(
        specials,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
    )
    proc = Gemma3Processor(
        image_processor=Gemma3ImageProcessorPil(
            size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3
        ),
        tokenizer=tok,
        chat_template=GEMMA_TEMPLATE,
        image_seq_length=4,
    )
    ids = tok.convert_tokens_to_ids
    cfg = Gemma3Config(
        text_config=Gemma3TextConfig(
            vocab_size=len(tok),
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=max(16, hidden // 2),
            query_pre_attn_scalar=16,
            sliding_window=64,
            max_position_embeddings=MAX_POS,
            pad_token_id=ids("<pad>"),
            bos_token_id=ids("<bos>"),
            eos_token_id=ids("<eos>"),
        ),
        vision_config=SiglipVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
            vision_use_head=False,
        ),
        mm_tokens_per_image=4,
        boi_token_index=ids("<start_of_image>"),
        eoi_token_index=ids("<end_of_image>"),
        image_token_index=ids("<image_soft_token>"),
    )
    torch.manual_seed(0)
    model = Gemma3ForConditionalGeneration(cfg).eval()
    model.generation_config.eos_token_id = [ids("<eos>"), ids("<end_of_turn>")]
    model.save_pretrained(out_dir)
    proc.save_pretrained(out_dir)
    return out_dir


def build_tiny_llava(out_dir: Path) -> Path:
    import torch
    from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor, MistralConfig
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tok = _tokenizer(
        ["<unk>", "<s>", "</s>", "<image>", "<pad>"],
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
    )
    ip = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    proc = LlavaProcessor(
        image_processor=ip,
        tokenizer=tok,
        patch_size=8,
        vision_feature_select_strategy="default",
        chat_template=LLAVA_TEMPLATE,
        num_additional_image_tokens=1,
    )
    cfg = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
            projection_dim=32,
        ),
        text_config=MistralConfig(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            max_position_embeddings=MAX_POS,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        ),
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        image_seq_length=16,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(cfg).eval()
    model.save_pretrained(out_dir)
    proc.save_pretrained(out_dir)
    return out_dir


def build_tiny_qwen2_5_vl(out_dir: Path) -> Path:
    """Qwen2.5-VL: the stock processor needs torchvision, so only its parts are saved (as a real folder has them)."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    specials = [
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<|vision_start|>",
        "<|vision_end|>",
        "<|image_pad|>",
        "<|video_pad|>",
    ]
    tok = _tokenizer(
        specials,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )
    ids = tok.convert_tokens_to_ids
    ip = Qwen2VLImageProcessorPil(
        size={"shortest_edge": 3136, "longest_edge": 3136}, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    cfg = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=MAX_POS,
            eos_token_id=ids("<|im_end|>"),
            pad_token_id=ids("<|endoftext|>"),
            bos_token_id=None,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
        ),
        vision_config=dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=32,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=56,
            fullatt_block_indexes=[1],
        ),
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(cfg).eval()
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    ip.save_pretrained(out_dir)
    (out_dir / "chat_template.jinja").write_text(QWEN_TEMPLATE, encoding="utf-8")
    return out_dir


MLLAMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{% for c in m['content'] %}{% if c['type']=='image' %}<|image|>{% elif c['type']=='text' %}{{ c['text'] }}"
    "{% endif %}{% endfor %}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def build_tiny_mllama(out_dir: Path) -> Path:
    """Llama 3.2 Vision layout: ``<|image|>`` is id ``vocab_size``, past the text vocabulary (as in the release)."""
    import torch
    from transformers import MllamaConfig, MllamaForConditionalGeneration, MllamaProcessor
    from transformers.models.mllama.configuration_mllama import MllamaTextConfig, MllamaVisionConfig
    from transformers.models.mllama.image_processing_pil_mllama import MllamaImageProcessorPil

    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|finetune_right_pad_id|>", "<|start_header_id|>"]
    specials += ["<|end_header_id|>", "<|eot_id|>", "<|python_tag|>"]
    tok = _tokenizer(
        specials, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>", pad_token="<|finetune_right_pad_id|>"
    )
    n_text = len(tok)
    tok.add_special_tokens({"additional_special_tokens": ["<|image|>"]})
    ids = tok.convert_tokens_to_ids
    proc = MllamaProcessor(
        image_processor=MllamaImageProcessorPil(size={"height": 28, "width": 28}, max_image_tiles=2),
        tokenizer=tok,
        chat_template=MLLAMA_TEMPLATE,
    )
    cfg = MllamaConfig(
        vision_config=MllamaVisionConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_global_layers=1,
            attention_heads=2,
            intermediate_size=64,
            vision_output_dim=96,  # hidden_size x (intermediate layers + 1)
            image_size=28,
            patch_size=14,
            max_num_tiles=2,
            intermediate_layers_indices=[0, 1],
            supported_aspect_ratios=[[1, 1], [1, 2], [2, 1]],
        ),
        text_config=MllamaTextConfig(
            vocab_size=n_text,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            intermediate_size=64,
            cross_attention_layers=[1],
            max_position_embeddings=MAX_POS,
            bos_token_id=ids("<|begin_of_text|>"),
            eos_token_id=ids("<|end_of_text|>"),
            pad_token_id=ids("<|finetune_right_pad_id|>"),
        ),
        image_token_index=ids("<|image|>"),
    )
    torch.manual_seed(0)
    model = MllamaForConditionalGeneration(cfg).eval()
    model.generation_config.eos_token_id = [ids("<|end_of_text|>"), ids("<|eot_id|>")]
    model.save_pretrained(out_dir)
    proc.save_pretrained(out_dir)
    return out_dir


BUILDERS = {
    "gemma3": build_tiny_gemma3,
    "llava": build_tiny_llava,
    "qwen2_5_vl": build_tiny_qwen2_5_vl,
    "mllama": build_tiny_mllama,
}


def write_manifest(folder: Path, family: str) -> None:
    """A note beside the tiny model saying how it was made (never mistaken for real weights)."""
    (folder / "TINY_RANDOM_MODEL.txt").write_text(
        json.dumps({"family": family, "made_by": "tests/models/tiny.py", "weights": "random"}), encoding="utf-8"
    )
