"""mmdx's database layer: the index, jobs, report versions, the outbox and the audit log.

Modules (every repository function takes a SQLAlchemy ``Session`` from
:meth:`store.db.Database.session` and leaves committing to it)::

    store.db         Database: engine (SQLite WAL / PostgreSQL), sessions, Alembic migrate
    store.schema     ORM tables and the state enums (JobState, OutboxState, ArtefactKind)
    store.index_writer  IndexWriter: the one writer of index rows (add: own transaction; add_to: the caller's)
    store.index      load_study, list_studies, content_version, add_quarantine, ... (add_instance re-exported)
    store.jobs       enqueue, enqueue_stable, claim_next (atomic), complete, fail, requeue_stale, ...
    store.reports    save_report_version (version + artefacts + outbox in one unit), latest_report, ...
    store.outbox     due, claim_due, mark_awaiting_commitment / delivered / retry / dead / skipped, ...
    store.audit      record, history (append-only)
    store.serialize  report_to_json / report_from_json (lossless DraftReport JSON)
"""
