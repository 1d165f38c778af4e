"""Database URLs, engines and migrations.

The server calls `open_database` once at start: it applies Alembic migrations with
a synchronous engine (on PostgreSQL under an advisory lock, so that replicas starting
together migrate once), then returns the async engine every request uses.

Only the control-plane API (`serve`) migrates. An inference gateway reads what `serve`
stores and never changes the schema: rolled out before the API servers in an upgrade, a
gateway that migrated would put old API servers on a schema newer than their code. It
opens the database with `migrate_schema=False` and asks `schema_behind` whether it must
wait for `serve` to migrate first.
"""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

_MIGRATIONS = Path(__file__).parent / "migrations"
# The advisory lock key migrations take: any 64-bit number, fixed, unlikely to be another
# application's (the bytes of "llm-laun").
_LOCK = int.from_bytes(b"llm-laun", "big")


def default_sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'llm-launch.db'}"


def _driver_urls(url: str) -> tuple[URL, URL]:
    """The (sync, async) driver URLs for a user-given URL such as postgresql://... ."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite"), parsed.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        psycopg = parsed.set(drivername="postgresql+psycopg")
        return psycopg, psycopg
    raise ValueError(
        f"unsupported database URL {parsed.render_as_string()!r}: use sqlite:// or postgresql://"
    )


def migrate(url: str) -> None:
    """Bring the schema up to the newest Alembic revision."""
    sync_url, _ = _driver_urls(url)
    if sync_url.get_backend_name() == "sqlite" and sync_url.database not in (None, "", ":memory:"):
        _create_private(Path(str(sync_url.database)))
    engine = create_engine(sync_url)
    try:
        with engine.begin() as connection:
            if sync_url.get_backend_name() == "postgresql":
                # Replicas starting together take turns: the first migrates, the others then
                # find the schema at head. A transaction-level advisory lock, released at
                # commit or rollback (PostgreSQL docs, "Advisory Locks"), and DDL is
                # transactional there, so a replica dying mid-migration leaves nothing half
                # done and holds no lock.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK})
            config = _alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def head_revision() -> str:
    """The newest revision this code's migrations know."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None  # the migrations folder ships with the package
    return head


def schema_behind(url: str) -> str | None:
    """Why the database's schema is older than this code needs (no schema yet, or an
    earlier revision of ours), or None when it is at head or newer (a revision this code
    does not know: the API servers were upgraded first, and a newer schema stays readable
    by older readers until a release says otherwise). Creates nothing: a SQLite file that
    does not exist yet is reported, not made."""
    sync_url, _ = _driver_urls(url)
    path = sync_url.database if sync_url.get_backend_name() == "sqlite" else None
    if path not in (None, "", ":memory:") and not Path(str(path)).exists():
        return f"the database file {path} does not exist yet"
    engine = create_engine(sync_url)
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    head = head_revision()
    if current is None:
        return f"the database has no schema yet (this code needs revision {head})"
    if current == head:
        return None
    try:
        known = ScriptDirectory.from_config(_alembic_config()).get_revision(current)
    except CommandError:
        known = None
    if known is None:
        return None  # newer than this code
    return f"the database schema is at revision {current}, this code needs {head}"


def _create_private(path: Path) -> None:
    """Create the SQLite file 0600 in a 0700 folder before SQLite does (its WAL and SHM
    files take the database file's mode): it holds every owner's endpoints."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def open_database(url: str, *, migrate_schema: bool = True) -> AsyncEngine:
    """Migrate (unless told not to), then return the async engine for `url`."""
    if migrate_schema:
        migrate(url)
    _, async_url = _driver_urls(url)
    if async_url.get_backend_name() == "sqlite":
        engine = create_async_engine(async_url, connect_args={"timeout": 30})
        _enable_sqlite_pragmas(engine.sync_engine)
        return engine
    return create_async_engine(async_url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _enable_sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        # WAL lets readers proceed while one writer commits; busy_timeout makes
        # concurrent writers wait instead of failing with "database is locked".
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()
