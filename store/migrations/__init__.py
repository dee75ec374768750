"""Alembic migrations of mmdx's database (run through store.db.Database.migrate)."""
