"""Reports benchmark: mmdx's builders and FHIR checker against peers doing the same work.

Run from the repository root::

    .venv/bin/python bench/bench_reports.py [--repeat 20]

Rows:
- TID 1500 SR for the chest study: ``reports.sr_tid1500`` (highdicom + mmdx post-processing: deterministic
  times, flags, predecessor, coding schemes, re-encoding guard) vs bare highdicom building the same groups and
  pydicom writing them.
- FHIR bundle check: the project checker (``reports.fhir_validate.check_bundle``) vs Medplum's validator
  (node, ``@medplum/core`` over the R4 StructureDefinitions) on the same bundles, node start included once
  per batch (what the tests pay).
- Whole report (every artefact of one version) has no single peer; its time is printed for scale.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import highdicom as hd
from pydicom.filewriter import dcmwrite

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reports import _dicom, sr_tid1500
from reports.fhir_bundle import build_bundle, bundle_json
from reports.fhir_validate import check_bundle, medplum_ready, validate_many_with_medplum
from reports.outputs import build_outputs
from tests.reports import helpers as h


def _timed(fn, repeat: int) -> float:
    fn()  # warm-up (imports, caches)
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat * 1000.0


def mmdx_sr() -> bytes:
    return sr_tid1500.build_tid1500_bytes(h.chest_report(), h.chest_study(), h.context())


def bare_highdicom_sr() -> bytes:
    report, study, ctx = h.chest_report(), h.chest_study(), h.context()
    instances = [i for s in study.series for i in s.instances]
    evidence = _dicom.evidence_datasets(study, instances, None)
    by_uid = {i.sop_instance_uid: i for i in instances}
    groups = [sr_tid1500._group(i, f, report, ctx, by_uid) for i, f in enumerate(report.findings)]
    content = hd.sr.MeasurementReport(
        observation_context=sr_tid1500.observation_context(report, ctx),
        procedure_reported=_dicom.hd_code(sr_tid1500.procedure_code(study)),
        imaging_measurements=groups,
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=content,
        series_instance_uid="1.2.3.4",
        series_number=1,
        sop_instance_uid="1.2.3.4.5",
        instance_number=1,
        manufacturer="x",
        is_complete=True,
    )
    buf = io.BytesIO()
    dcmwrite(buf, sr, enforce_file_format=True)
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    rows = []
    rows.append(
        (
            "SR TID 1500 chest, build+encode",
            _timed(mmdx_sr, args.repeat),
            _timed(bare_highdicom_sr, args.repeat),
            "bare highdicom",
        )
    )
    bundles = [
        bundle_json(build_bundle(h.chest_report(), h.chest_study(), h.context())),
        bundle_json(build_bundle(h.ecg_report(), h.ecg_study(), h.context())),
    ] * 5
    mmdx_check = _timed(lambda: [check_bundle(json.loads(b)) for b in bundles], args.repeat) / len(bundles)
    peer = float("nan")
    if medplum_ready():
        t = time.perf_counter()
        validate_many_with_medplum(bundles)
        peer = (time.perf_counter() - t) * 1000.0 / len(bundles)
    rows.append((f"FHIR bundle check (batch of {len(bundles)})", mmdx_check, peer, "Medplum validateResource"))
    whole = _timed(
        lambda: build_outputs(h.chest_report(), h.chest_study(), h.context(), images=(h.chest_key_image(),)),
        max(3, args.repeat // 4),
    )
    print(f"{'work':42} {'mmdx ms':>9} {'peer ms':>9} {'ratio':>7}  peer")
    for name, ours, theirs, peer_name in rows:
        print(f"{name:42} {ours:9.2f} {theirs:9.2f} {ours / theirs:7.3g}  {peer_name}")
    print(f"{'all artefacts of one chest report version':42} {whole:9.2f} {'-':>9} {'-':>7}  (no single peer)")


if __name__ == "__main__":
    main()
