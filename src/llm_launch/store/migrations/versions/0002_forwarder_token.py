"""Give every endpoint its own forwarder token (the data plane's secret).

Existing endpoints get a random token each. Forwarders started by an older version check
no token: they keep serving (unauthenticated) until their group is next started, by a
restart or an update, which gives the new forwarder its token.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("forwarder_token", sa.String(64), nullable=True))
    endpoints = sa.table("endpoints", sa.column("id", sa.String), sa.column("forwarder_token"))
    connection = op.get_bind()
    for (endpoint_id,) in connection.execute(sa.select(endpoints.c.id)).all():
        connection.execute(
            endpoints.update()
            .where(endpoints.c.id == endpoint_id)
            .values(forwarder_token=secrets.token_urlsafe(32))
        )
    with op.batch_alter_table("endpoints") as batch:
        batch.alter_column("forwarder_token", existing_type=sa.String(64), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("forwarder_token")
