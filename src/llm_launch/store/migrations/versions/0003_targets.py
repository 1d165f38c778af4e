"""Store each endpoint's ready targets, for `llm-launch gateway` processes.

A nullable text column (a JSON list of forwarder URLs): the reconciler writes it when the
ready groups change and clears it when none is ready. Existing rows start NULL (no
targets) until the reconciler's next pass fills them in.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("targets", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("targets")
