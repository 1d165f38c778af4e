"""Port allocation for local groups: every port of every group is distinct.

Ports come from a configured range and are checked free with a bind before they are
handed out, so groups of different endpoints (and other programs) never collide.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable


class PortsExhausted(RuntimeError):
    pass


class PortAllocator:
    def __init__(
        self,
        first: int = 20000,
        last: int = 29999,
        host: str = "127.0.0.1",
        is_free: Callable[[str, int], bool] | None = None,
    ) -> None:
        self._range = range(first, last + 1)
        self._host = host
        # Injectable so the bookkeeping can be tested apart from what else holds ports.
        self._is_free = is_free or port_is_free
        self._taken: set[int] = set()
        self._next = first
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return len(self._range)

    def describe(self) -> str:
        return f"{self._range[0]}-{self._range[-1]}"

    def allocate(self, count: int) -> list[int]:
        with self._lock:
            ports: list[int] = []
            for _ in range(len(self._range)):
                port = self._next
                self._next = port + 1 if port < self._range[-1] else self._range[0]
                if port not in self._taken and self._is_free(self._host, port):
                    self._taken.add(port)
                    ports.append(port)
                    if len(ports) == count:
                        return ports
            self._taken.difference_update(ports)
            raise PortsExhausted(f"no {count} free ports in {self._range[0]}-{self._range[-1]}")

    def reserve(self, ports: Iterable[int]) -> None:
        """Mark ports as used (groups adopted after a restart keep theirs)."""
        with self._lock:
            self._taken.update(ports)

    def release(self, ports: Iterable[int]) -> None:
        with self._lock:
            self._taken.difference_update(ports)


def port_is_free(host: str, port: int) -> bool:
    """Whether a TCP listener could bind host:port now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
