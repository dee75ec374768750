"""bridge: outbox states as the bridge uses them: ``superseded`` added, ``sent`` dropped

``superseded``: an unsent preliminary skipped by policy (``skip_superseded``) because a newer
version of its study was queued for the same destination; it was stored as ``dead``, which
inflated dead-letter counts and made ``mmdx outbox retry --dead`` re-queue it.  ``sent``: no
sender ever set it (a peer's answer is awaited only for storage commitment, which has its own
state), so it is dropped; a row in it (none expected) goes back to ``pending``.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = ("pending", "sent", "awaiting_commitment", "delivered", "dead")
_NEW = ("pending", "awaiting_commitment", "delivered", "dead", "superseded")
#: what store.outbox.mark_skipped wrote into last_error before this revision
_SKIPPED = "skipped: superseded%"


def _state(values: Sequence[str]) -> sa.Enum:
    return sa.Enum(*values, name="outbox_state", native_enum=False, create_constraint=True, length=19)


def _retype(old: Sequence[str], new: Sequence[str]) -> None:
    # SQLite: the table is copied with the new CHECK; PostgreSQL: the CHECK is dropped and created again
    with op.batch_alter_table("outbox", recreate="auto") as batch:
        batch.alter_column("state", existing_type=_state(old), type_=_state(new), existing_nullable=False)


def upgrade() -> None:
    op.execute("UPDATE outbox SET state = 'pending' WHERE state = 'sent'")
    _retype(_OLD, _NEW)
    op.execute(f"UPDATE outbox SET state = 'superseded' WHERE state = 'dead' AND last_error LIKE '{_SKIPPED}'")


def downgrade() -> None:
    op.execute("UPDATE outbox SET state = 'dead' WHERE state = 'superseded'")
    _retype(_NEW, _OLD)
