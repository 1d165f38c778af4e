"""Control-plane replicas starting together against one PostgreSQL migrate it once: the
migration runs under an advisory lock, and those that waited find the schema at head.

Replicas are processes (Alembic's `context` is module-global, so migrations are not run
from several threads of one process, and a server never does)."""

from __future__ import annotations

import multiprocessing
from multiprocessing.synchronize import Barrier

import psycopg

from llm_launch.store.database import migrate
from tests.support.databases import fresh_postgres_database

REPLICAS = 6


def _migrate_together(barrier: Barrier, url: str) -> None:
    barrier.wait(timeout=60)  # all start their migration at the same moment
    migrate(url)


def test_replicas_starting_together_against_one_postgres_all_migrate_it_without_error() -> None:
    with fresh_postgres_database() as url:
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(REPLICAS)
        replicas = [
            context.Process(target=_migrate_together, args=(barrier, url)) for _ in range(REPLICAS)
        ]
        for replica in replicas:
            replica.start()
        for replica in replicas:
            replica.join(timeout=120)
            if replica.exitcode is None:
                replica.kill()
        assert [r.exitcode for r in replicas] == [0] * REPLICAS
        with psycopg.connect(url) as connection:
            versions = connection.execute("SELECT version_num FROM alembic_version").fetchall()
            tables = connection.execute(
                "SELECT count(*) FROM pg_tables WHERE tablename = 'endpoints'"
            ).fetchone()
        assert len(versions) == 1  # one history, at head: migrated once
        assert tables == (1,)
