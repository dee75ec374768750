"""``mmdx batch``: resumable cohort runs over folders, manifests, PACS queries and report tables.

sources (plan the items, index the studies) -> engine (local process pool or
Ray) running :func:`app.pipeline.process_study` per study -> one cohort row per
item stored with the item's state in the mmdx database (``store.runs``) ->
cohort table (Parquet + CSV), FHIR Bulk NDJSON, run summary (JSON + Markdown).
"""

from app.batch.runner import BatchOptions, BatchResult, run_batch

__all__ = ["BatchOptions", "BatchResult", "run_batch"]
