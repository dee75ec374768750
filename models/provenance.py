"""One :class:`core.records.ModelCall` per model call, from what a backend reported.

Backends report their reproducibility facts as a string mapping
(``ModelOutput.provenance``: prompt hash, decoding settings, how the output
was held to the schema, device, dtype).  This module turns each output, the
failed ones included, into the frozen record that is stored with the report
version and rendered next to the AI text, so nothing a backend computed is
dropped on the way to the record.
"""

from __future__ import annotations

from core.records import ModelCall, ModelCallOutcome
from models.protocol import ModelOutput

#: backend kind -> the task its calls perform in the pipeline
TASKS = {"local_vlm": "draft", "remote_vlm": "draft", "cxr_classifier": "triage", "ecg_cnn": "ecg"}


def _classifier_facts(prov: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(prov.items()))


def model_call(out: ModelOutput, backend: str) -> ModelCall:
    """The provenance record of one output (a failed output keeps its reason and raw answer)."""
    prov = dict(out.provenance)
    task = TASKS.get(backend, backend)
    drafting = task == "draft"
    return ModelCall(
        producer=out.producer,
        outcome=ModelCallOutcome.OK if out.ok else ModelCallOutcome.FAILED,
        task=task,
        prompt_template=prov.get("prompt_template", ""),
        prompt_sha256=prov.get("prompt_sha256", ""),
        decoding=prov.get("decoding", "" if drafting else _classifier_facts(prov)),
        output_control=prov.get("constrained", "" if drafting else "classifier"),
        repaired=prov.get("repair_used") == "true",
        device=prov.get("device", prov.get("endpoint", "")),
        dtype=prov.get("dtype", ""),
        seconds=float(sum(out.timings_s.values())),
        raw_answer=out.raw_text or "",
        error="" if out.error is None else str(out.error),
    )
