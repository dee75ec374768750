"""The index: dedupe, round trip, content versions, quiet studies, quarantine."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst
from sqlalchemy import func, select

from core.errors import StoreError
from core.records import Patient, PatientIdentifier, Series, Study
from store import index
from store.db import Database
from store.index import IndexResult
from store.jobs import enqueue
from store.schema import InstanceRow, PatientIdentifierRow, PatientRow
from tests.store.conftest import STUDY_UID, T0, digest, make_instance, make_patient, make_series, make_study, sha


def _add(
    db: Database,
    n: int,
    *,
    study: Study | None = None,
    series: Series | None = None,
    content: str | None = None,
    at: datetime = T0,
) -> IndexResult:
    study = study or make_study()
    series = series or make_series(study.study_instance_uid)
    inst = make_instance(n, study_uid=study.study_instance_uid, series_uid=series.series_instance_uid, content=content)
    with db.session() as s:
        return index.add_instance(s, study=study, series=series, instance=inst, received_at=at)


def test_new_duplicate_conflict(db):
    assert _add(db, 1) is IndexResult.NEW
    assert _add(db, 1, at=T0 + timedelta(seconds=5)) is IndexResult.DUPLICATE
    assert _add(db, 1, content="other bytes", at=T0 + timedelta(seconds=9)) is IndexResult.CONFLICT
    with db.session() as s:
        # the original is kept, the conflict logged with both hashes
        assert s.scalar(select(func.count(InstanceRow.id))) == 1
        assert s.scalars(select(InstanceRow.content_digest)).one() == digest("bytes-1")
        conflicts = index.list_conflicts(s)
        assert [(c.existing_digest, c.new_digest) for c in conflicts] == [(digest("bytes-1"), digest("other bytes"))]
        assert conflicts[0].source == "scp:MODALITY"
        # neither the duplicate nor the conflict moved the study's clock
        assert index.last_received_at(s, STUDY_UID) == T0


def test_load_study_round_trip(db):
    study = make_study()
    s1, s2 = make_series(number=2), make_series(uid=STUDY_UID + ".2", number=1, modality="SR")
    with db.session() as s:
        for n in (3, 1, 2):
            index.add_instance(s, study=study, series=s1, instance=make_instance(n), received_at=T0)
        index.add_instance(
            s, study=study, series=s2, instance=make_instance(1, series_uid=s2.series_instance_uid), received_at=T0
        )
    with db.session(readonly=True) as s:
        loaded = index.load_study(s, STUDY_UID)
        assert index.load_study(s, "1.2.3.4") is None
    assert loaded is not None
    expected = replace(
        study,
        series=(
            replace(s2, instances=(make_instance(1, series_uid=s2.series_instance_uid),)),
            replace(s1, instances=tuple(make_instance(n) for n in (1, 2, 3))),
        ),
    )
    assert loaded == expected
    assert loaded.patient.identifiers[0].value == "PID-001"
    assert loaded.patient.name == "Doe^Jane"
    assert loaded.instance_count == 4
    assert loaded.modalities == ("CT", "SR")


def test_size_read_from_file_when_not_given(db, tmp_path):
    f = tmp_path / "obj.dcm"
    f.write_bytes(b"x" * 1234)
    inst = replace(make_instance(1), path=f)
    with db.session() as s:
        index.add_instance(s, study=make_study(), series=make_series(), instance=inst, received_at=T0)
        index.add_instance(
            s, study=make_study(), series=make_series(), instance=make_instance(2), received_at=T0, size_bytes=7
        )
        sizes = dict(s.execute(select(InstanceRow.sop_instance_uid, InstanceRow.size_bytes)).all())
    assert sizes == {inst.sop_instance_uid: 1234, make_instance(2).sop_instance_uid: 7}


def test_content_version_changes_only_with_new_content(db):
    _add(db, 1)
    with db.session() as s:
        v1 = index.content_version(s, STUDY_UID)
    _add(db, 1, at=T0 + timedelta(seconds=1))  # duplicate
    _add(db, 1, content="changed", at=T0 + timedelta(seconds=2))  # conflict
    with db.session() as s:
        assert index.content_version(s, STUDY_UID) == v1
    _add(db, 2, at=T0 + timedelta(seconds=3))
    with db.session() as s:
        v2 = index.content_version(s, STUDY_UID)
        assert index.last_received_at(s, STUDY_UID) == T0 + timedelta(seconds=3)
    assert v2 != v1 and len(v2) == 64
    with db.session() as s:  # the O(1) running value equals a recomputation over the stored instances
        assert index.recompute_content_version(s, STUDY_UID) == v2


def test_content_version_independent_of_arrival_order(tmp_path):
    from store.db import Database

    versions = []
    for i, order in enumerate(([1, 2, 3], [3, 1, 2])):
        d = Database(f"sqlite:///{tmp_path}/order{i}.db")
        d.migrate()
        for n in order:
            _add(d, n)
        with d.session() as s:
            versions.append(index.content_version(s, STUDY_UID))
        d.dispose()
    assert versions[0] == versions[1]


def test_cached_study_state_survives_writers_on_other_engines_and_rollbacks(db):
    """Two engines alternating keep the content version; a unit rolled back after indexing leaves nothing behind."""
    other = Database(db.url.render_as_string(hide_password=False))
    try:
        for n in range(1, 9):  # alternate writers: each one's cached content version is stale every other time
            _add(db if n % 2 else other, n, at=T0 + timedelta(seconds=n))
        with pytest.raises(RuntimeError), db.session() as s:
            study2 = make_study(uid=STUDY_UID + ".99")
            series2 = make_series(uid=STUDY_UID + ".99.1", study_uid=study2.study_instance_uid)
            index.add_instance(
                s, study=study2, series=series2, instance=make_instance(
                    50, study_uid=study2.study_instance_uid, series_uid=series2.series_instance_uid
                ), received_at=T0,
            )  # fmt: skip
            raise RuntimeError("the unit of work fails after indexing")
        # the rolled-back study and series were not cached: indexing them again creates them
        assert _add(db, 51, study=study2, series=series2) is IndexResult.NEW
        with db.session() as s:
            assert index.content_version(s, STUDY_UID) == index.recompute_content_version(s, STUDY_UID)
            assert index.content_version(s, study2.study_instance_uid) == index.recompute_content_version(
                s, study2.study_instance_uid
            )
            assert s.scalar(select(func.count(InstanceRow.id))) == 9
    finally:
        other.dispose()


def test_content_version_unknown_study_names_uid(db):
    with db.session() as s, pytest.raises(StoreError, match=r"study 1\.2\.3 is not in the index"):
        index.content_version(s, "1.2.3")


def test_patient_matched_on_identifier_and_issuer(db):
    a = make_study("1.2.3.1", make_patient("P1", "HOSP"))
    b = make_study("1.2.3.2", make_patient("P1", "HOSP"))
    c = make_study("1.2.3.3", make_patient("P1", "OTHER"))  # same value, other issuer: another patient
    anon1 = make_study("1.2.3.4", Patient())
    anon2 = make_study("1.2.3.5", Patient())
    for st in (a, b, c, anon1, anon2):
        _add(db, 1, study=st, series=make_series(st.study_instance_uid, uid=st.study_instance_uid + ".1"))
    with db.session() as s:
        assert s.scalar(select(func.count(PatientRow.id))) == 4  # a==b, c, and two anonymous patients
        assert s.scalar(select(func.count(PatientIdentifierRow.id))) == 2
        loaded = index.load_study(s, "1.2.3.4")
    assert loaded is not None and loaded.patient.identifiers == ()


def test_new_identifier_added_to_matched_patient(db):
    p1 = Patient(identifiers=(PatientIdentifier("P9", None),))
    p2 = Patient(identifiers=(PatientIdentifier("P9", None), PatientIdentifier("NHS9", "NHS")))
    _add(db, 1, study=make_study("1.2.4.1", p1), series=make_series("1.2.4.1", uid="1.2.4.1.1"))
    _add(db, 1, study=make_study("1.2.4.2", p2), series=make_series("1.2.4.2", uid="1.2.4.2.1"))
    with db.session() as s:
        assert s.scalar(select(func.count(PatientRow.id))) == 1
        loaded = index.load_study(s, "1.2.4.1")
    assert loaded is not None
    assert {(i.value, i.issuer) for i in loaded.patient.identifiers} == {("P9", None), ("NHS9", "NHS")}


def test_mismatched_hierarchy_is_refused_naming_uids(db):
    study = make_study()
    other_series = make_series("1.2.5", uid="1.2.5.1")
    with db.session() as s, pytest.raises(StoreError, match=r"series 1\.2\.5\.1 names study 1\.2\.5"):
        index.add_instance(s, study=study, series=other_series, instance=make_instance(1), received_at=T0)
    with db.session() as s:
        assert index.list_studies(s) == []


def test_series_under_another_study_is_refused(db):
    _add(db, 1)
    other = make_study("1.2.6")
    moved = make_series("1.2.6")  # same series UID, claims another study
    inst = make_instance(9, study_uid="1.2.6")
    with pytest.raises(StoreError, match="already indexed under another study"), db.session() as s:
        index.add_instance(s, study=other, series=moved, instance=inst, received_at=T0)
    with db.session() as s:
        assert [st.study_instance_uid for st in index.list_studies(s)] == [STUDY_UID]  # rolled back whole


def test_naive_timestamp_refused(db):
    with db.session() as s, pytest.raises(StoreError, match="timezone-aware"):
        index.add_instance(
            s, study=make_study(), series=make_series(), instance=make_instance(1), received_at=T0.replace(tzinfo=None)
        )


def test_studies_quiet_since(db):
    _add(db, 1, study=make_study("1.2.7.1"), series=make_series("1.2.7.1", uid="1.2.7.1.1"), at=T0)
    _add(db, 1, study=make_study("1.2.7.2"), series=make_series("1.2.7.2", uid="1.2.7.2.1"), at=T0 + timedelta(60))
    cutoff = T0 + timedelta(seconds=30)
    with db.session() as s:
        assert index.studies_quiet_since(s, cutoff) == ["1.2.7.1"]
        assert enqueue(s, "1.2.7.1", index.content_version(s, "1.2.7.1"), cutoff) is not None
    with db.session() as s:
        assert index.studies_quiet_since(s, cutoff) == []  # its content has a job now
    # a late instance makes a new content version: quiet again once the stable age has passed
    late = T0 + timedelta(seconds=40)
    _add(db, 2, study=make_study("1.2.7.1"), series=make_series("1.2.7.1", uid="1.2.7.1.1"), at=late)
    with db.session() as s:
        assert index.studies_quiet_since(s, late - timedelta(seconds=1)) == []
        assert index.studies_quiet_since(s, late) == ["1.2.7.1"]


def test_quarantine(db):
    with db.session() as s:
        qid = index.add_quarantine(
            s, path=Path("/in/bad.dcm"), reason="not DICOM: no DICM preamble", source="file", received_at=T0
        )
        index.add_quarantine(
            s,
            path="/in/worse.dcm",
            reason="missing (0020,000D) StudyInstanceUID",
            source="scp:CT1",
            received_at=T0 + timedelta(seconds=1),
            sha256=sha("x"),
        )
        with pytest.raises(StoreError, match="non-empty reason"):
            index.add_quarantine(s, path="/x", reason=" ", source="file", received_at=T0)
    with db.session() as s:
        entries = index.list_quarantine(s)
    assert [e.path for e in entries] == [Path("/in/worse.dcm"), Path("/in/bad.dcm")]
    assert entries[1].id == qid and entries[1].sha256 is None and entries[0].sha256 == sha("x")
    assert entries[0].received_at == T0 + timedelta(seconds=1)


def test_list_studies_newest_first_and_without_children(db):
    for i, uid in enumerate(("1.2.8.1", "1.2.8.2")):
        _add(db, 1, study=make_study(uid), series=make_series(uid, uid=uid + ".1"), at=T0 + timedelta(seconds=i))
    with db.session(readonly=True) as s:
        full = index.list_studies(s)
        bare = index.list_studies(s, with_children=False, limit=1)
    assert [st.study_instance_uid for st in full] == ["1.2.8.2", "1.2.8.1"]
    assert full[0].instance_count == 1
    assert len(bare) == 1 and bare[0].series == () and bare[0].patient.name == "Doe^Jane"


def test_patient_repr_has_no_phi_in_errors(db):
    """An error about a refused instance names UIDs only, never the patient's identifiers or name."""
    study = make_study()
    bad = make_instance(1, study_uid="1.2.9")
    with db.session() as s, pytest.raises(StoreError) as err:
        index.add_instance(s, study=study, series=make_series(), instance=bad, received_at=T0)
    assert "PID-001" not in str(err.value) and "Doe" not in str(err.value)


def test_quarantine_is_idempotent_per_input_and_reason(db):
    def add(path: str, reason: str, digest: str | None, at) -> int:
        with db.session() as s:
            return index.add_quarantine(s, path=path, reason=reason, source="file", received_at=at, sha256=digest)

    first = add("/in/a.txt", "not DICOM", sha("a"), T0)
    assert add("/in/a.txt", "not DICOM", sha("a"), T0 + timedelta(hours=1)) == first  # re-run: same entry
    assert add("/in/a.txt", "not DICOM", sha("changed"), T0) != first  # new content: a new entry
    assert add("/in/a.txt", "another reason", sha("a"), T0) != first
    none_hash = add("/in/b", "unreadable", None, T0)
    assert add("/in/b", "unreadable", None, T0) == none_hash
    with db.session() as s:
        assert len(index.list_quarantine(s)) == 4


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    plan=hst.lists(
        hst.tuples(hst.integers(1, 12), hst.sampled_from(["a", "b"]), hst.integers(0, 2)), min_size=1, max_size=30
    ),
    preload=hst.sets(hst.integers(1, 12), max_size=4),
)
def test_bulk_add_equals_one_by_one(tmp_path_factory, plan, preload):
    """add_instances gives add_instance's results, rows, conflicts and content versions, batch duplicates included."""
    results, states = [], []
    for mode in ("single", "bulk"):
        d = Database(f"sqlite:///{tmp_path_factory.mktemp(mode)}/i.db")
        d.migrate()
        studies = [make_study(uid=f"{STUDY_UID}.{k}") for k in range(3)]
        series = [make_series(study_uid=st_.study_instance_uid, uid=f"{st_.study_instance_uid}.1") for st_ in studies]
        for n in sorted(preload):  # already indexed before the batch
            _add(d, n, study=studies[n % 3], series=series[n % 3])
        items = [
            index.NewInstance(
                studies[n % 3],
                series[n % 3],
                make_instance(
                    n, study_uid=studies[n % 3].study_instance_uid, series_uid=series[n % 3].series_instance_uid,
                    content=f"{content}-{n}",
                ),
            )
            for n, content, _ in plan
        ]  # fmt: skip
        with d.session() as s:
            if mode == "single":
                got = [
                    index.add_instance(s, study=i.study, series=i.series, instance=i.instance, received_at=T0)
                    for i in items
                ]
            else:
                got = index.add_instances(s, items, received_at=T0)
        with d.session() as s:
            versions = [
                index.content_version(s, x.study_instance_uid)
                for x in studies
                if index.load_study(s, x.study_instance_uid)
            ]
            for x in studies:
                if index.load_study(s, x.study_instance_uid):
                    assert index.content_version(s, x.study_instance_uid) == index.recompute_content_version(
                        s, x.study_instance_uid
                    )
            rows = sorted(
                s.execute(select(InstanceRow.sop_instance_uid, InstanceRow.content_digest, InstanceRow.series_id)).all()
            )
            conflicts = sorted((c.existing_digest, c.new_digest) for c in index.list_conflicts(s))
        results.append(got)
        states.append((versions, rows, conflicts))
        d.dispose()
    assert results[0] == results[1]
    assert states[0] == states[1]
