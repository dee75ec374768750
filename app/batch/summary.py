"""The run's other outputs: FHIR Bulk Data NDJSON (one file per resource type) and the run summary.

Both are rebuilt from the stored items at the end of every run (and of every
resume), so an interrupted run never leaves duplicated lines behind.
"""

from __future__ import annotations

import json
import os
import platform
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from core.version import SOFTWARE_NAME, SOFTWARE_VERSION
from store.runs import ItemInfo
from store.schema import BatchItemState


def _write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_ndjson(items: Iterable[ItemInfo], out_dir: Path) -> dict[str, int]:
    """``fhir/<ResourceType>.ndjson`` from the items' report bundles; resource type -> count."""
    folder = out_dir / "fhir"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.ndjson"):
        old.unlink()
    handles: dict[str, Any] = {}
    counts: Counter[str] = Counter()
    try:
        for item in items:
            if not item.fhir:
                continue
            bundle = json.loads(item.fhir)
            for entry in bundle.get("entry", []):
                resource = entry.get("resource")
                if not isinstance(resource, dict) or "resourceType" not in resource:
                    continue
                rtype = str(resource["resourceType"])
                fh = handles.get(rtype)
                if fh is None:
                    fh = handles[rtype] = (folder / f"{rtype}.ndjson.tmp").open("w", encoding="utf-8")
                fh.write(json.dumps(resource, sort_keys=True, separators=(",", ":")) + "\n")
                counts[rtype] += 1
    finally:
        for fh in handles.values():
            fh.close()
    for rtype in handles:
        os.replace(folder / f"{rtype}.ndjson.tmp", folder / f"{rtype}.ndjson")
    return dict(sorted(counts.items()))


def failure_reason(error: str) -> str:
    """A reason class for the summary: the error without the part naming the item."""
    text = error.split(": ", 1)[1] if ": " in error and error.split(": ", 1)[0].count(" ") == 0 else error
    return text.split(" (")[0][:120]


def build_summary(
    run_id: str,
    source: str,
    options: Mapping[str, Any],
    items: Sequence[ItemInfo],
    *,
    elapsed_s: float,
    ndjson: Mapping[str, int],
    outputs: Sequence[str],
) -> dict[str, Any]:
    done = [i for i in items if i.state is BatchItemState.DONE]
    failed = [i for i in items if i.state is BatchItemState.FAILED]
    by_reason = Counter(failure_reason(i.error or "") for i in failed)
    seconds = sorted(i.seconds for i in done if i.seconds is not None)
    return {
        "run_id": run_id,
        "source": source,
        "options": dict(options),
        "counts": {
            "items": len(items),
            "done": len(done),
            "failed": len(failed),
            "pending": len(items) - len(done) - len(failed),
            "by_kind": dict(sorted(Counter(i.kind for i in items).items())),
            "with_report": sum(1 for i in done if (i.row or {}).get("status") == "done"),
        },
        "failures": [
            {"item": i.seq, "source_path": i.source_path, "reason": i.error}
            for i in failed  # the path is the researcher's own input; de-identified runs replace it
        ],
        "failures_by_reason": dict(by_reason.most_common()),
        "timings": {
            "elapsed_s": round(elapsed_s, 3),
            "items_per_s": round(len(done) / elapsed_s, 3) if elapsed_s > 0 else None,
            "item_s_median": seconds[len(seconds) // 2] if seconds else None,
            "item_s_max": seconds[-1] if seconds else None,
        },
        "fhir_ndjson": dict(ndjson),
        "outputs": list(outputs),
        "versions": {SOFTWARE_NAME: SOFTWARE_VERSION, "python": platform.python_version()},
    }


def summary_markdown(summary: Mapping[str, Any]) -> str:
    c = summary["counts"]
    t = summary["timings"]
    lines = [
        f"# mmdx batch run {summary['run_id']}",
        "",
        f"Source: `{summary['source']}`",
        "",
        "| items | done | with report | failed | pending |",
        "|---|---|---|---|---|",
        f"| {c['items']} | {c['done']} | {c['with_report']} | {c['failed']} | {c['pending']} |",
        "",
        f"Elapsed {t['elapsed_s']} s; {t['items_per_s']} items/s; median item {t['item_s_median']} s.",
        "",
    ]
    options = summary.get("options") or {}
    if options.get("analyses"):
        models = options.get("models")
        lines += [
            f"Analyses: {', '.join(options['analyses'])}; models: "
            + (", ".join(models) if models else "every configured model"),
            "",
        ]
    if summary["failures_by_reason"]:
        lines += ["## Failures by reason", "", "| reason | count |", "|---|---|"]
        lines += [f"| {r} | {n} |" for r, n in summary["failures_by_reason"].items()]
        lines += ["", "## Failed items", "", "| item | source | reason |", "|---|---|---|"]
        lines += [f"| {f['item']} | `{f['source_path']}` | {f['reason']} |" for f in summary["failures"]]
        lines.append("")
    if summary["fhir_ndjson"]:
        lines += ["## FHIR NDJSON", "", "| resource type | count |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in summary["fhir_ndjson"].items()]
        lines.append("")
    versions = ", ".join(f"{k} {v}" for k, v in summary["versions"].items())
    lines += [f"Versions: {versions}.", ""]
    return "\n".join(lines)


def write_summary(summary: Mapping[str, Any], out_dir: Path) -> tuple[Path, Path]:
    j = _write_text(out_dir / "summary.json", json.dumps(summary, indent=2, sort_keys=False) + "\n")
    m = _write_text(out_dir / "summary.md", summary_markdown(summary))
    return j, m
