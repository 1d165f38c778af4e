"""The preStop commands of a group: `drain` (its forwarder) and `wait-drained` (its engines).

Run as `llm-launch-forwarder drain ...` and `llm-launch-forwarder wait-drained ...` (the
forwarder program, which every engine image of ours carries), from the launch plan's
`ContainerPlan.pre_stop` (`engines.common`): Kubernetes runs them as the containers'
`lifecycle.preStop.exec` hooks, the local backend runs the forwarder's before it stops a
group. Their next hop is the forwarder's HTTP port:

- `drain --url http://127.0.0.1:5000 --grace-s 90` POSTs `/drain` with the forwarder's own
  token (LLM_LAUNCH_FORWARDER_TOKEN, in the forwarder container's environment only), so
  the forwarder stops taking requests and fails readiness, then waits until `/drained`
  says no request is in flight, or the grace ends. The forwarder also accepts `/drain`
  only from loopback: nobody on the pod network can take a group out of service, even
  with the token the control plane uses.
- `wait-drained` polls the open, read-only `GET /drained` until the forwarder has drained
  (or is gone: then nothing more can reach the engine through it), or the grace ends.
  The leader's engine uses the local forwarder (`--url`); a worker uses its leader's
  (`--leader-port`, with the address LWS sets in LWS_LEADER_ADDRESS), since a worker
  that stopped first would break its leader's in-flight generations.

Kubernetes runs every container's preStop hook at once, and sends a container SIGTERM
only when its own hook has returned ("Container Lifecycle Hooks", PreStop: "the hook must
complete before the TERM signal to stop the container can be sent"); the grace period
counts from the start of the hooks, so the pod's terminationGracePeriodSeconds exceeds
the drain grace (`engines.common.termination_grace_s`). Both commands always exit 0:
draining is best effort, and a failing hook would only add a FailedPreStopHook event.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence

import httpx

from llm_launch.engines.common import FORWARDER_TOKEN_ENV

__all__ = ["COMMANDS", "drain", "main", "wait_drained"]

COMMANDS = ("drain", "wait-drained")
LEADER_ADDRESS_ENV = "LWS_LEADER_ADDRESS"
POLL_S = 0.5
REQUEST_TIMEOUT_S = 5.0


def drain(
    client: httpx.Client,
    url: str,
    token: str | None,
    grace_s: float,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Ask the forwarder at `url` to drain, then wait for it: what happened, in one line."""
    deadline = clock() + grace_s
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        answer = client.post(f"{url}/drain", headers=headers)
    except httpx.ConnectError:
        return f"forwarder at {url} is not running: nothing to drain"
    except httpx.HTTPError as exc:
        return f"forwarder at {url} could not be asked to drain: {type(exc).__name__}: {exc}"
    if answer.status_code != 200:
        return f"forwarder at {url} refused to drain: {answer.status_code} {answer.text[:200]}"
    return wait_drained(client, url, max(0.0, deadline - clock()), clock)


def wait_drained(
    client: httpx.Client,
    url: str,
    grace_s: float,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Wait until the forwarder at `url` has no request in flight, is gone, or the grace
    ends; what happened, in one line."""
    deadline = clock() + grace_s
    in_flight: object = "unknown"
    while True:
        try:
            answer = client.get(f"{url}/drained")
        except httpx.ConnectError:
            # Gone (or its name no longer resolves): nothing reaches the engine through it.
            return f"forwarder at {url} is gone: drained"
        except httpx.HTTPError:
            answer = None  # slow or cut off: ask again until the grace ends
        if answer is not None:
            if answer.status_code == 200:
                return f"forwarder at {url} drained"
            if answer.headers.get("content-type", "").startswith("application/json"):
                in_flight = answer.json().get("in_flight", in_flight)
        if clock() >= deadline:
            return (
                f"drain grace of {grace_s:.0f} s ended with {in_flight} request(s) still "
                f"in flight at {url}"
            )
        time.sleep(POLL_S)


def leader_url(port: int, environ: dict[str, str]) -> str:
    """The leader's forwarder, from the address the LeaderWorkerSet controller sets."""
    address = environ.get(LEADER_ADDRESS_ENV, "")
    if not address:
        raise SystemExit(f"wait-drained --leader-port: {LEADER_ADDRESS_ENV} is not set")
    if ":" in address and not address.startswith("["):
        address = f"[{address}]"  # an IPv6 literal
    return f"http://{address}:{port}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llm-launch-forwarder", description="A group's preStop commands (drain, wait)."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    drain_parser = commands.add_parser("drain", help="drain the local forwarder, then wait")
    drain_parser.add_argument("--url", required=True, help="the forwarder, on loopback")
    wait = commands.add_parser("wait-drained", help="wait until a forwarder has drained")
    where = wait.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="the forwarder's base URL")
    where.add_argument(
        "--leader-port", type=int, help=f"the leader's forwarder port (at ${LEADER_ADDRESS_ENV})"
    )
    for sub in (drain_parser, wait):
        sub.add_argument("--grace-s", type=float, required=True, help="longest wait, seconds")
    return parser


def main(argv: Sequence[str]) -> None:
    args = build_parser().parse_args(argv)
    environ = dict(os.environ)
    with httpx.Client(timeout=REQUEST_TIMEOUT_S, trust_env=False) as client:
        if args.command == "drain":
            result = drain(client, args.url, environ.get(FORWARDER_TOKEN_ENV), args.grace_s)
        else:
            url = args.url or leader_url(args.leader_port, environ)
            result = wait_drained(client, url, args.grace_s)
    print(f"llm-launch {args.command}: {result}", flush=True)
