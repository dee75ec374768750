"""labelled content digests: instances.sha256 -> content_digest ("<algorithm>:<hex>")

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

DICOM objects are now digested with XXH3-128 (``ingest.filestore.content_digest``).
The digests already stored stay what they are, sha256, and say so: they become
``"sha256:<hex>"``.  A copy of such an object received again digests with the
new algorithm, so it compares unequal and is logged as a conflict with the
original kept: the safe side of a dedupe.  Study content versions are left as
they are (they identify the content, and new instances fold into them as before).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RENAMES = {
    'instances': (('sha256', 'content_digest'),),
    'instance_conflicts': (('existing_sha256', 'existing_digest'), ('new_sha256', 'new_digest')),
}


def upgrade() -> None:
    for table, columns in _RENAMES.items():
        with op.batch_alter_table(table) as batch:
            for old, new in columns:
                batch.alter_column(
                    old, new_column_name=new, existing_type=sa.String(64), type_=sa.String(80), existing_nullable=False
                )
        for _, new in columns:
            op.execute(f"UPDATE {table} SET {new} = 'sha256:' || {new} WHERE {new} NOT LIKE '%:%'")


def downgrade() -> None:
    conn = op.get_bind()
    for table, columns in _RENAMES.items():
        for _, new in columns:
            other = conn.scalar(sa.text(f"SELECT COUNT(*) FROM {table} WHERE {new} NOT LIKE 'sha256:%'"))
            if other:
                raise RuntimeError(
                    f"cannot downgrade below 0002: {other} row(s) of {table}.{new} hold digests other than sha256, "
                    "which schema 0001 cannot hold (re-index those objects after the downgrade instead)"
                )
            op.execute(f"UPDATE {table} SET {new} = substr({new}, 8)")
        with op.batch_alter_table(table) as batch:
            for old, new in columns:
                batch.alter_column(
                    new, new_column_name=old, existing_type=sa.String(80), type_=sa.String(64), existing_nullable=False
                )
