"""One local process of a group: spawn it, poll it, stop it with its whole process tree.

Processes run in their own session (process group), so stopping one also stops what it
started. A process adopted after a server restart is not our child: it is polled
through /proc and recognised by its start time, so a recycled PID is never killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from llm_launch.backends.local.files import open_private

START_MARKER = "=== llm-launch: start "  # begins the line the group writes before each start
EXCERPT_LINES = 10
EXCERPT_BYTES = 8192
EXCERPT_LINE_CHARS = 300


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of `pid` (clock ticks since boot), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie has exited
        return None
    return int(fields[19])


@dataclass
class LocalProcess:
    name: str  # e.g. "rank-1" or "forwarder"
    pid: int
    start_time: int
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None  # None when adopted
    exit_code: int | None = None

    @classmethod
    def spawn(
        cls, name: str, argv: Sequence[str], env: Mapping[str, str], log_path: Path
    ) -> LocalProcess:
        with open_private(log_path) as log:
            # umask 077: what the process creates (staged weights, caches) is private too.
            popen = subprocess.Popen(
                list(argv), env=dict(env), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, umask=0o077,
            )  # fmt: skip
        start = process_start_time(popen.pid) or 0
        return cls(name, popen.pid, start, log_path, popen)

    @classmethod
    def adopt(cls, name: str, pid: int, start_time: int, log_path: Path) -> LocalProcess | None:
        """Take over a process recorded earlier, if it is still that same process."""
        if process_start_time(pid) != start_time:
            return None
        return cls(name, pid, start_time, log_path)

    def alive(self) -> bool:
        if self.exit_code is not None:
            return False
        if self.popen is not None:
            code = self.popen.poll()
            if code is not None:
                self.exit_code = code
                return False
            return True
        if process_start_time(self.pid) != self.start_time:
            self.exit_code = -1  # adopted: the real status is not ours to read
            return False
        return True

    def exit_facts(self) -> tuple[int | None, str | None, str]:
        """(exit status, signal name, what was seen) of a process that exited."""
        code = self.exit_code
        if code is None:
            return None, None, "is running"
        if self.popen is None:
            return None, None, "exited (status unknown: adopted after a server restart)"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                return None, None, f"killed by signal {-code}"
            return None, name, f"killed by {name}"
        return code, None, f"exited with status {code}"

    def log_excerpt(self, lines: int = EXCERPT_LINES) -> str | None:
        """The last `lines` lines its log holds since its latest start, or None: attached to
        a failure's cause for people to read, never shown as a status reason."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - EXCERPT_BYTES))
                text = log.read().decode(errors="replace")
        except OSError:
            return None
        _, marker, since = text.rpartition(START_MARKER)
        if marker:  # the marker line itself is ours, not the process's
            since = since.partition("\n")[2]
        kept = [ln.rstrip()[:EXCERPT_LINE_CHARS] for ln in since.splitlines() if ln.strip()]
        return "\n".join(kept[-lines:]) or None

    def signal_tree(self, sig: signal.Signals) -> None:
        if self.exit_code is not None and self.popen is not None:
            return
        if process_start_time(self.pid) != self.start_time:
            return  # gone, or the PID now belongs to someone else
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the process tree, then SIGKILL what is left after `grace_s`."""
        self.signal_tree(signal.SIGTERM)
        # A stopped process (SIGSTOP, a debugger) acts on SIGTERM only once continued;
        # systemd sends SIGCONT after SIGTERM for the same reason.
        self.signal_tree(signal.SIGCONT)
        deadline = time.monotonic() + grace_s
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.alive():
            self.signal_tree(signal.SIGKILL)
            if self.popen is not None:
                self.popen.wait(timeout=5)
        # Members of the session that outlived the leader (none, for well-behaved engines).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
