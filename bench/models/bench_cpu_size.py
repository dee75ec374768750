"""What a CPU-only site can expect: a realistic-size random VLM in bfloat16 vs int8 dynamic quantisation.

A Gemma 3 (MedGemma architecture) with random weights at a realistic size (default: the text stack of
Gemma 3 1B - hidden 1152, 26 layers, 262k-token-class embedding replaced by the small test vocabulary so the
build stays fast - with a SigLIP-base vision tower at 224 px) is saved and loaded through the production
path (`models.local_vlm.LocalVlmBackend`); each mode runs in its own process so the peak resident memory
(ru_maxrss) is that mode's alone.  int8 = `torch.ao.quantization.quantize_dynamic` of every nn.Linear
(weights int8, activations quantised on the fly; it needs float32 around it), the usual CPU recipe.
The peer is the float32 model mmdx loads on CPU by default.

    .venv/bin/python bench/models/bench_cpu_size.py --studies 2 --new-tokens 16
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def build(folder: Path, hidden: int, layers: int) -> None:
    import torch
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, SiglipVisionConfig
    from transformers.models.gemma3.configuration_gemma3 import Gemma3TextConfig

    from tests.models.tiny import build_tiny_gemma3

    build_tiny_gemma3(folder)  # tokenizer, processor and chat template of the test model
    cfg = json.loads((folder / "config.json").read_text())
    tc, vc = cfg["text_config"], cfg["vision_config"]
    text = Gemma3TextConfig(
        vocab_size=tc["vocab_size"], hidden_size=hidden, intermediate_size=hidden * 6, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=1, head_dim=256, query_pre_attn_scalar=256, sliding_window=512,
        max_position_embeddings=8192, pad_token_id=tc["pad_token_id"], bos_token_id=tc["bos_token_id"],
        eos_token_id=tc["eos_token_id"],
    )  # fmt: skip
    vision = SiglipVisionConfig(
        hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        image_size=vc["image_size"], patch_size=vc["patch_size"], vision_use_head=False,
    )  # fmt: skip
    full = Gemma3Config(
        text_config=text, vision_config=vision, mm_tokens_per_image=cfg["mm_tokens_per_image"],
        boi_token_index=cfg["boi_token_index"], eoi_token_index=cfg["eoi_token_index"],
        image_token_index=cfg["image_token_index"],
    )  # fmt: skip
    torch.manual_seed(0)
    model = Gemma3ForConditionalGeneration(full).eval()
    model.generation_config.eos_token_id = tc["eos_token_id"]
    model.save_pretrained(folder)


def run_mode(folder: Path, mode: str, studies: int, new_tokens: int, warmup: int) -> dict[str, float]:
    import numpy as np
    import torch

    from core.config import ModelSpec
    from core.records import Image
    from models.local_vlm import LocalVlmBackend
    from models.protocol import ModelInput

    dtype = "bfloat16" if mode == "bf16" else "float32"
    spec = ModelSpec(
        backend="local_vlm", family="gemma3", path=folder, device="cpu", dtype=dtype, max_batch=1,
        max_new_tokens=new_tokens, options={"constrained": False, "min_new_tokens": new_tokens},
    )  # fmt: skip
    be = LocalVlmBackend("cpu", spec)
    t = time.perf_counter()
    be.load()
    params = sum(p.numel() for p in be._model.parameters())  # before quantisation hides the Linear weights
    if mode == "int8":
        be._model = torch.ao.quantization.quantize_dynamic(be._model, {torch.nn.Linear}, dtype=torch.qint8)
    load_s = time.perf_counter() - t
    rng = np.random.default_rng(0)
    inputs = [
        ModelInput(
            study_instance_uid=f"1.2.826.0.7.{i}", modality="DX", body_part="CHEST",
            images=(Image(rng.integers(0, 4096, (512, 512)).astype(np.uint16), view_position="PA"),),
        )
        for i in range(studies)
    ]  # fmt: skip
    for inp in inputs[:warmup]:
        be.generate_texts([inp])
    t = time.perf_counter()
    for inp in inputs:
        be.generate_texts([inp])
    per_study = (time.perf_counter() - t) / studies
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"load_s": load_s, "s_per_study": per_study, "peak_mb": peak_mb, "params_m": params / 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=1152)
    ap.add_argument("--layers", type=int, default=26)
    ap.add_argument("--studies", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--modes", default="fp32,bf16,int8")
    ap.add_argument("--warmup", type=int, default=1, help="untimed studies first (0 on a busy machine)")
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--folder", help="reuse a model folder this script built earlier")
    args = ap.parse_args()
    if args.mode:  # child process: one mode
        print(json.dumps(run_mode(Path(args.folder), args.mode, args.studies, args.new_tokens, args.warmup)))
        return
    import torch

    if args.folder:
        folder = Path(args.folder)
    else:
        folder = Path(tempfile.mkdtemp(prefix="mmdx-bench-cpu-")) / "gemma3"
        t = time.perf_counter()
        build(folder, args.hidden, args.layers)
        print(f"built and saved in {time.perf_counter() - t:.1f} s")
    print(f"CPU threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    rows = {}
    for mode in args.modes.split(","):
        out = subprocess.run(
            [sys.executable, __file__, "--mode", mode, "--folder", str(folder), "--studies", str(args.studies),
             "--new-tokens", str(args.new_tokens), "--warmup", str(args.warmup)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        rows[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        r = rows[mode]
        print(
            f"{mode:5s}: {r['params_m']:7.0f} M params, load {r['load_s']:5.1f} s, "
            f"{r['s_per_study']:6.2f} s/study ({args.new_tokens} new tokens), peak RSS {r['peak_mb']:6.0f} MB, "
            f"load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    if "fp32" in rows:
        for mode in ("bf16", "int8"):
            if mode in rows:
                print(f"{mode} vs fp32: {rows['fp32']['s_per_study'] / rows[mode]['s_per_study']:.2f}x speed, "
                      f"{rows[mode]['peak_mb'] / rows['fp32']['peak_mb']:.2f}x memory")  # fmt: skip


if __name__ == "__main__":
    main()
