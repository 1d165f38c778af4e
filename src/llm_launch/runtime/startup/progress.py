"""The startup program's progress report: the phase it is in, in a small JSON file.

Called by `runtime/startup/program.py` at each step (and, while weights download, by the fetch's
progress callback through `FetchMeter`); the file is `$LLM_LAUNCH_PROGRESS_FILE`, and
none is written when that is unset. Readers: the local backend (every rank's file) and
the leader's forwarder, which serves its rank's report in its `/readyz` body (on
Kubernetes the two containers share the file's directory). The document is
`domain.progress.StartupProgress`.

Each report replaces the last atomically (a sibling file renamed over it), so a reader
never sees half of one. A report that cannot be written is logged once and otherwise
ignored: a progress report must never be why a group does not start.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path

from llm_launch.domain.progress import PROGRESS_FILE_ENV, Phase, StartupProgress, WeightsProgress

__all__ = ["FetchMeter", "ProgressReporter"]

# As a file created under the process's umask: in a pod (umask 022) the forwarder, which
# runs as another user, reads it; the local backend's processes (umask 077) keep it private.
# (mkstemp would make it 0600 whatever the umask.)
CREATED_MODE = 0o666
FETCH_REPORT_INTERVAL_S = 1.0  # at most one downloading report per second
RATE_WINDOW_S = 10.0  # the rate is over the last seconds of the fetch, not since its start


class ProgressReporter:
    """Writes this rank's reports to `path`; with no path, reports go nowhere."""

    def __init__(
        self,
        path: Path | None,
        rank: int,
        log: Callable[[str], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.rank = rank
        self._log = log
        self._clock = clock
        self._lock = threading.Lock()
        self._failed = False  # a write failed once: said so, not again
        self._mode = CREATED_MODE & ~_umask()

    @classmethod
    def from_environment(
        cls, log: Callable[[str], None], environ: Mapping[str, str] = os.environ
    ) -> ProgressReporter:
        path = environ.get(PROGRESS_FILE_ENV)
        rank = environ.get("LWS_WORKER_INDEX", "0")
        return cls(Path(path) if path else None, int(rank) if rank.isdigit() else 0, log)

    def report(
        self, phase: Phase, detail: str | None = None, weights: WeightsProgress | None = None
    ) -> None:
        if self.path is None:
            return
        progress = StartupProgress(self.rank, phase, self._clock(), detail, weights)
        with self._lock:
            try:
                _write_atomically(self.path, progress.to_json(), self._mode)
            except OSError as exc:
                if not self._failed:
                    self._failed = True
                    self._log(f"cannot write the progress report {self.path}: {exc}; going on")

    def fetch_meter(self, uri: str) -> FetchMeter:
        """The callback for `fetch_checkpoint(progress=...)`; reports the fetch's start now."""
        self.report(Phase.DOWNLOADING_WEIGHTS, detail=uri)
        return FetchMeter(self)


class FetchMeter:
    """Turns a fetch's (bytes done, total) callbacks into downloading reports: at most one
    per FETCH_REPORT_INTERVAL_S (and the last, complete one), with the rate over the
    last RATE_WINDOW_S."""

    def __init__(
        self, reporter: ProgressReporter, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._reporter = reporter
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque()
        self._last_report: float | None = None

    def __call__(self, done: int, total: int | None) -> None:
        now = self._clock()
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW_S:
            self._samples.popleft()
        complete = total is not None and done >= total
        if (
            not complete
            and self._last_report is not None
            and now - self._last_report < FETCH_REPORT_INTERVAL_S
        ):
            return
        self._last_report = now
        weights = WeightsProgress(done, total, self._rate())
        self._reporter.report(Phase.DOWNLOADING_WEIGHTS, weights=weights)

    def _rate(self) -> float:
        (first_at, first_done), (last_at, last_done) = self._samples[0], self._samples[-1]
        if last_at <= first_at:
            return 0.0
        return max(0.0, (last_done - first_done) / (last_at - first_at))


def _umask() -> int:
    """This process's umask, read without changing it (other threads may create files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc: the classic read, which sets it back at once
    os.umask(mask)
    return mask


def _write_atomically(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, staged = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            os.fchmod(handle.fileno(), mode)
        os.replace(staged, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(staged)
        raise
