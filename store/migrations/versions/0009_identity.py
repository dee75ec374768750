"""identity: the study attributes derived objects copy unchanged, and the source's UTC offset

``studies.study_id`` (DICOM StudyID), ``studies.study_time`` (StudyTime exactly as received,
``093431.70``) and ``studies.utc_offset_minutes`` (the offset the source stated: DICOM
TimezoneOffsetFromUTC, an aECG or SCP-ECG time zone; NULL: the site's local wall clock).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# plain ADD/DROP COLUMN (SQLite >= 3.35 has both): a batch table copy would drop "studies", and with foreign
# keys on, that cascades to every series and instance


def upgrade() -> None:
    op.add_column("studies", sa.Column("study_id", sa.String(length=16), nullable=True))
    op.add_column("studies", sa.Column("study_time", sa.String(length=16), nullable=True))
    op.add_column("studies", sa.Column("utc_offset_minutes", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("studies", "utc_offset_minutes")
    op.drop_column("studies", "study_time")
    op.drop_column("studies", "study_id")
