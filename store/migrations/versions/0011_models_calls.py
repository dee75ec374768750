"""models: the model failures of a report version, beside its priority, for the worklist

``report_versions.model_errors``: the "model 'X' failed: reason" lines of the version (newline-separated,
PHI-free), NULL when every routed model answered; the worklist shows them without reading the payload.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("report_versions", sa.Column("model_errors", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("report_versions", "model_errors")
