"""orders: the orders received from the RIS/EHR and which order each study answers

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("placer_number", sa.String(length=64), nullable=False),
        sa.Column("placer_authority", sa.String(length=64), nullable=False),
        sa.Column("filler_number", sa.String(length=64), nullable=True),
        sa.Column("filler_authority", sa.String(length=64), nullable=True),
        sa.Column("accession_number", sa.String(length=16), nullable=True),
        sa.Column("patient_id_value", sa.String(length=64), nullable=False),
        sa.Column("patient_id_issuer", sa.String(length=64), nullable=False),
        sa.Column("patient_name", sa.String(length=256), nullable=True),
        sa.Column("patient_birth_date", sa.Date(), nullable=True),
        sa.Column(
            "patient_sex",
            sa.Enum("M", "F", "O", "U", name="order_patient_sex", native_enum=False, create_constraint=True),
            nullable=False,
        ),
        sa.Column("procedure_code", sa.String(length=64), nullable=True),
        sa.Column("procedure_system", sa.String(length=256), nullable=True),
        sa.Column("procedure_text", sa.String(length=256), nullable=True),
        sa.Column("modality", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("clinical_history", sa.Text(), nullable=True),
        sa.Column("ordering_provider", sa.String(length=256), nullable=True),
        sa.Column("scheduled_at", sa.DateTime(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "scheduled",
                "in-progress",
                "completed",
                "cancelled",
                name="order_status",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column(
            "source",
            sa.Enum("hl7", "fhir", "worklist", name="order_source", native_enum=False, create_constraint=True),
            nullable=False,
        ),
        sa.Column("service_request_id", sa.String(length=64), nullable=True),
        sa.Column("requested_procedure_id", sa.String(length=16), nullable=True),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("accession_number", name=op.f("uq_orders_accession_number")),
        sa.UniqueConstraint("placer_number", "placer_authority", name=op.f("uq_orders_placer_number_placer_authority")),
    )
    op.create_index(op.f("ix_orders_patient_id_value"), "orders", ["patient_id_value"], unique=False)
    op.create_table(
        "order_matches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column(
            "strength",
            sa.Enum(
                "accession",
                "study-uid",
                "patient-procedure-date",
                name="order_match_strength",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column("conflicts", sa.Text(), nullable=False),
        sa.Column("matched_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_order_matches_order_id_orders"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_matches")),
        sa.UniqueConstraint("study_instance_uid", name=op.f("uq_order_matches_study_instance_uid")),
    )
    op.create_index(op.f("ix_order_matches_order_id"), "order_matches", ["order_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_order_matches_order_id"), table_name="order_matches")
    op.drop_table("order_matches")
    op.drop_index(op.f("ix_orders_patient_id_value"), table_name="orders")
    op.drop_table("orders")
