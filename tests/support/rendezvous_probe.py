"""A stand-in engine for tests/multihost/: it records how the startup program started it,
then does the group's rendezvous over TCP at `--dist-init-addr`, as SGLang's nodes do.

Run by `llm-launch-startup --engine-program "python rendezvous_probe.py"`, inside a network
namespace. It writes `$PROBE_OUT_DIR/rank-<r>.started.json` at once (argv, SGLANG_HOST_IP,
this namespace's addresses), then:
- rank 0 listens on the dist-init host and port (so that address must be its own) and
  accepts one worker;
- other ranks connect to it (retrying while the leader is not yet listening);
and writes `rank-<r>.done.json` with what each saw of the other. Standard library only.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import sys
import time
from pathlib import Path


def flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def own_addresses() -> list[str]:
    """This namespace's IPv6 addresses, from /proc/net/if_inet6."""
    addresses = []
    for line in Path("/proc/net/if_inet6").read_text().splitlines():
        raw = line.split()[0]
        addresses.append(str(ipaddress.IPv6Address(bytes.fromhex(raw))))
    return addresses


def split_host_port(address: str) -> tuple[str, int]:
    """As strict as SGLang's NetworkAddress.parse: IPv6 must be bracketed."""
    if address.startswith("["):
        host, _, port = address[1:].partition("]:")
    else:
        host, _, port = address.rpartition(":")
        if ":" in host:
            sys.exit(f"probe: bare IPv6 in --dist-init-addr {address!r}")
    return host, int(port)


def write(path: Path, document: dict[str, object]) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(document))
    partial.rename(path)


def serve(host: str, port: int, timeout: float) -> dict[str, str]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((host, port))
        server.listen()
        server.settimeout(timeout)
        while True:
            conn, peer = server.accept()
            with conn:
                conn.settimeout(timeout)
                said = conn.makefile("r").readline().strip()
                if not said:
                    # A worker's startup program checking that the leader answers: it
                    # connects and closes, as torch's store and Ray's head tolerate.
                    continue
                conn.sendall(b"welcome from rank 0\n")
            return {"peer": peer[0], "said": said}


def join(host: str, port: int, timeout: float, hello: str) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = socket.create_connection((host, port), timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    with conn:
        conn.sendall(hello.encode() + b"\n")
        reply = conn.makefile("r").readline().strip()
        return {"local": conn.getsockname()[0], "reply": reply}


def main() -> None:
    argv = sys.argv[1:]
    out = Path(os.environ["PROBE_OUT_DIR"])
    timeout = float(os.environ.get("PROBE_TIMEOUT_S", "15"))
    rank = int(flag(argv, "--node-rank") or 0)
    report: dict[str, object] = {
        "argv": argv,
        "SGLANG_HOST_IP": os.environ.get("SGLANG_HOST_IP"),
        "addresses": own_addresses(),
        "started_at": time.time(),
    }
    write(out / f"rank-{rank}.started.json", report)
    dist_init = flag(argv, "--dist-init-addr")
    if dist_init is None:
        sys.exit("probe: no --dist-init-addr")
    host, port = split_host_port(dist_init)
    if rank == 0:
        report["rendezvous"] = serve(host, port, timeout)
    else:
        hello = f"hello from rank {rank} at {os.environ.get('SGLANG_HOST_IP')}"
        report["rendezvous"] = join(host, port, timeout, hello)
    write(out / f"rank-{rank}.done.json", report)


if __name__ == "__main__":
    main()
