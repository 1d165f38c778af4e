"""SQLAlchemy table definitions. Alembic migrations under `migrations/` create them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class EndpointRow(Base):
    """One endpoint. The spec is one JSON document; the columns we filter on stand alone."""

    __tablename__ = "endpoints"
    __table_args__ = (
        # One name per owner; the database enforces it, so concurrent creates cannot race.
        UniqueConstraint("owner", "name", name="uq_endpoints_owner_name"),
        Index("ix_endpoints_status", "status"),
        Index("ix_endpoints_revision", "revision"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(63))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(32))
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    generation: Mapped[int] = mapped_column(Integer)
    available_workers: Mapped[int] = mapped_column(Integer, default=0)
    unavailable_workers: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The endpoint's data-plane secret (secrets.token_urlsafe(32): 43 characters), which
    # its forwarders require on every inference request; never returned by the API.
    forwarder_token: Mapped[str] = mapped_column(String(64))
    # The ready groups' forwarder URLs as the reconciler last saw them (a JSON list; NULL
    # when none is ready), for `llm-launch gateway` processes, which run no backend.
    targets: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The routing revision of the row's last change (store/revisions.py): routing tables
    # re-read only the rows stamped after the revision they last read.
    revision: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class RoutingRevisionRow(Base):
    """The change counter (one row, id 1): the revision of the last change to what routing
    tables hold, and the revision up to which removals may have been pruned."""

    __tablename__ = "routing_revision"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger)
    pruned: Mapped[int] = mapped_column(BigInteger)


class EndpointRemovalRow(Base):
    """A removed endpoint and the revision of its removal: a deleted row cannot be read,
    so routing tables learn of it here. Pruned to the last REMOVALS_KEPT revisions."""

    __tablename__ = "endpoint_removals"

    revision: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(String(40), primary_key=True)


class OperationRow(Base):
    """The work a create, update or delete recorded for a backend to carry out.

    Its id is the `endpoint_creation_task_id` the API returns. Rows outlive their
    endpoint, as an audit trail of who asked for what.
    """

    __tablename__ = "endpoint_operations"
    __table_args__ = (Index("ix_endpoint_operations_endpoint_id", "endpoint_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(String(40))
    owner: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    generation: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
