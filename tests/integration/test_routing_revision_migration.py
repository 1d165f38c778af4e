"""Migration 0004 (the routing change counter) on a database holding endpoints, on SQLite and
PostgreSQL: existing rows are stamped, the counter starts, a routing table reads them and
then follows changes by revision; and the migration goes back down cleanly."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

import llm_launch.store
from llm_launch.config.loader import load_hardware_catalog
from llm_launch.domain.spec_builder import build_spec
from llm_launch.domain.status import EndpointStatus
from llm_launch.services.routing_table import RoutingTable
from llm_launch.store.database import open_database
from llm_launch.store.repository import EndpointRepository
from tests.builders import endpoint_body

MIGRATIONS = Path(llm_launch.store.__file__).parent / "migrations"
# The endpoints table as migration 0003 left it (no revision column).
ENDPOINTS_0003 = sa.table(
    "endpoints",
    *(sa.column(c) for c in ("id", "owner", "name", "status", "status_reason", "generation")),
    *(sa.column(c) for c in ("available_workers", "unavailable_workers", "forwarder_token")),
    sa.column("spec", sa.JSON),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("last_updated_at", sa.DateTime(timezone=True)),
)


def migrate(url: str, target: str, *, down: bool = False) -> None:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.begin() as connection:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = connection
            (command.downgrade if down else command.upgrade)(config, target)
    finally:
        engine.dispose()


def insert_endpoint_at_0003(url: str, endpoint_id: str, name: str) -> None:
    now = datetime.now(UTC)
    spec = build_spec(endpoint_body(name=name), load_hardware_catalog()).to_dict()
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.begin() as connection:
            connection.execute(
                ENDPOINTS_0003.insert().values(
                    id=endpoint_id, owner="alice", name=name, spec=spec, status="READY",
                    status_reason="ready", generation=1, available_workers=1,
                    unavailable_workers=0, forwarder_token="t" * 43, created_at=now,
                    last_updated_at=now,
                )
            )  # fmt: skip
    finally:
        engine.dispose()


async def test_existing_endpoints_are_stamped_and_followed_by_revision_after_the_migration(
    database_url: str,
) -> None:
    migrate(database_url, "0003")
    insert_endpoint_at_0003(database_url, "end_before0001", "chat")
    insert_endpoint_at_0003(database_url, "end_before0002", "code")

    engine = open_database(database_url)  # migrates to head
    try:
        async with engine.connect() as connection:
            stamped = (await connection.execute(sa.text("SELECT revision FROM endpoints"))).all()
            counter = (
                await connection.execute(sa.text("SELECT revision, pruned FROM routing_revision"))
            ).all()
        assert sorted(stamped) == [(1,), (1,)]
        assert counter == [(1, 0)]

        repository = EndpointRepository(engine)
        table = RoutingTable(repository)
        await table.refresh()
        assert len(table) == 2
        await repository.set_status("end_before0001", EndpointStatus.UPDATE_FAILED, "crashed")
        await table.refresh()
        assert table.lookup("alice", "chat").status is EndpointStatus.UPDATE_FAILED
        assert table.full_reads == 1  # the second refresh followed the counter
    finally:
        await engine.dispose()


def test_the_migration_goes_down_and_up_again(database_url: str) -> None:
    migrate(database_url, "head")
    migrate(database_url, "0003", down=True)
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        tables = set(sa.inspect(engine).get_table_names())
        columns = {c["name"] for c in sa.inspect(engine).get_columns("endpoints")}
    finally:
        engine.dispose()
    assert not {"routing_revision", "endpoint_removals"} & tables
    assert "revision" not in columns
    migrate(database_url, "head")
