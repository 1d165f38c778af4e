"""The routing change counter, the removals log and each endpoint's revision.

See store/revisions.py. Existing rows are stamped with revision 1 and the counter starts
there, so a routing table's first (full) read covers them all. The column's server
default (0) also catches rows a replica still running the code before this migration
writes during a rolling upgrade: routing tables pick those up at their periodic full read.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "routing_revision",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("pruned", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "endpoint_removals",
        sa.Column("revision", sa.BigInteger(), primary_key=True),
        sa.Column("endpoint_id", sa.String(40), primary_key=True),
    )
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("revision", sa.BigInteger(), nullable=False, server_default="0"))
        batch.create_index("ix_endpoints_revision", ["revision"])
    op.execute("UPDATE endpoints SET revision = 1")
    op.execute("INSERT INTO routing_revision (id, revision, pruned) VALUES (1, 1, 0)")


def downgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_index("ix_endpoints_revision")
        batch.drop_column("revision")
    op.drop_table("endpoint_removals")
    op.drop_table("routing_revision")
