"""What a reconciler pass does with many endpoints stored, seen from the database.

For bench/gateway_scaling.py's part 2: `store_others` stores endpoints of other owners
scaled to zero (the local backend runs min_workers groups and does not autoscale, so none
starts a process, yet every reconciler pass applies and observes each one); `visited`
counts those a pass has reached (no longer UPDATE_PENDING); `Probes` times how soon the
reconciler comes back to an endpoint it has visited, which bounds its pass period from
outside (the reconciler reports no pass time, in its log or otherwise); `stored_targets`
reads an endpoint's id and stored targets.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

from tests.builders import endpoint_body

from llm_launch.config.loader import load_hardware_catalog
from llm_launch.domain.spec_builder import build_spec
from llm_launch.store.database import open_database
from llm_launch.store.repository import EndpointRepository

__all__ = ["Probes", "store_others", "stored_targets", "visited"]

OTHER_OWNERS = 100
# Rows of the others that a pass has reached (their owners are `other0`..`other99`).
VISITED = "owner LIKE 'other%' AND status != 'UPDATE_PENDING'"


async def store_others(database: Path, count: int) -> None:
    """`count` endpoints of OTHER_OWNERS owners, scaled to zero, through the repository
    (the same code the API uses)."""
    engine = open_database(f"sqlite:///{database}")
    repository, catalog = EndpointRepository(engine), load_hardware_catalog()
    semaphore = asyncio.Semaphore(8)

    async def one(i: int) -> None:
        body = endpoint_body(name=f"other-{i:05d}", inference_framework="sglang",
                             min_workers=0, max_workers=1)  # fmt: skip
        async with semaphore:
            await repository.create(f"other{i % OTHER_OWNERS}", build_spec(body, catalog))

    await asyncio.gather(*(one(i) for i in range(count)))
    await engine.dispose()


def stored_targets(database: Path, owner: str, name: str) -> tuple[str, str | None]:
    """The endpoint's id and its stored targets (the reconciler's JSON text)."""
    with closing(sqlite3.connect(database, timeout=30)) as db:
        query = "SELECT id, targets FROM endpoints WHERE owner = ? AND name = ?"
        endpoint_id, targets = db.execute(query, (owner, name)).fetchone()
    return str(endpoint_id), targets


class Probes:
    """How soon the reconciler comes back to an endpoint it visited: a few of them get a
    status reason the backend does not report, which the reconciler rewrites at its next
    visit (so each delay is at most one pass period, pause included). Polled every 0.1 s
    from a thread, while the caller measures something else."""

    REASON = "bench probe: the reconciler rewrites this at its next visit"

    def __init__(self, database: Path, count: int = 5) -> None:
        self.database, self.count = database, count
        self.delays: list[float] = []  # seconds from the write to the rewrite
        self.pending = 0  # probes not rewritten by the time the caller was done
        self.unwritten = False  # the probes could not be written (database locked 30 s)
        self._stop = threading.Event()
        self._ids: list[str] = []
        self._thread = threading.Thread(target=self._watch)

    def __enter__(self) -> Probes:
        try:
            with closing(sqlite3.connect(self.database, timeout=30)) as db, db:
                ids = [row[0] for row in db.execute(f"SELECT id FROM endpoints WHERE {VISITED}")]
                self._ids = random.sample(ids, min(self.count, len(ids)))
                marks = ",".join("?" * len(self._ids))
                query = f"UPDATE endpoints SET status_reason = ? WHERE id IN ({marks})"
                db.execute(query, (self.REASON, *self._ids))
        except sqlite3.OperationalError:  # the server held the write lock for 30 s
            self.unwritten, self._ids = True, []
        self._start = time.monotonic()
        self._thread.start()
        return self

    def _watch(self) -> None:
        waiting = set(self._ids)
        with closing(sqlite3.connect(self.database, timeout=30)) as db:
            while waiting and not self._stop.wait(0.1):
                marks = ",".join("?" * len(waiting))
                query = f"SELECT id, status_reason FROM endpoints WHERE id IN ({marks})"
                for endpoint_id, reason in db.execute(query, tuple(waiting)).fetchall():
                    if reason != self.REASON:
                        waiting.discard(endpoint_id)
                        self.delays.append(time.monotonic() - self._start)
        self.pending = len(waiting)

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def visited(database: Path) -> int:
    """Other owners' endpoints a reconciler pass has reached (no longer UPDATE_PENDING)."""
    with closing(sqlite3.connect(database, timeout=30)) as db:
        return int(db.execute(f"SELECT count(*) FROM endpoints WHERE {VISITED}").fetchone()[0])
