"""`llm-launch-forwarder`: the HTTP forwarder beside the engine on a group's leader.

Started by the launch plan's forwarder container (`engines.common.forwarder_container`:
Kubernetes runs it in the leader pod, the local backend as a process) with
`--host --port --engine-url --engine-api --served-model-name --max-concurrency
[--ready-check-path]`. Callers: the control plane's inference routes (Launch's
`/predict`, `/stream`, OpenAI `/v1/...`) and the readiness/liveness probes (`/readyz`,
`/healthz`; while the engine is not ready, `/readyz` carries the startup report of
`--progress-file`, default $LLM_LAUNCH_PROGRESS_FILE), and the group's preStop hooks
(`/drain`, `/drained`: see `runtime.forwarder.drain`, whose `drain` and `wait-drained` commands this
program also runs). Next hop: the engine at `--engine-url`, through `runtime.forwarder.app`.

Its token (the endpoint's data-plane secret) comes from the environment variable
LLM_LAUNCH_FORWARDER_TOKEN, never the command line (anyone on the host can read argv in
/proc); inference routes then answer only `Authorization: Bearer <token>`. Without a token
it refuses to start, unless `--no-token` says to answer anyone (local debugging only).

Runs uvicorn with uvloop and httptools, no access log (nothing is logged per request).

    llm-launch-forwarder --engine-url http://127.0.0.1:5005 --engine-api sglang \\
        --ready-check-path /health_generate
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import MutableMapping, Sequence

import uvicorn

from llm_launch.domain.progress import PROGRESS_FILE_ENV
from llm_launch.engines.common import FORWARDER_TOKEN_ENV
from llm_launch.http_timeouts import DEFAULT_HEADER_TIMEOUT_S, header_timeout_protocol
from llm_launch.runtime.forwarder import drain
from llm_launch.runtime.forwarder.app import ForwarderConfig, create_app
from llm_launch.runtime.forwarder.engines import ENGINE_APIS
from llm_launch.runtime.startup.network import auto_listen_host

__all__ = ["TOKEN_ENV", "main", "parse_args"]

TOKEN_ENV = FORWARDER_TOKEN_ENV  # LLM_LAUNCH_FORWARDER_TOKEN

log = logging.getLogger("llm_launch.forwarder")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llm-launch-forwarder",
        description="Forward Launch and OpenAI-compatible inference requests to one engine.",
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1",
        help="address to listen on (default 127.0.0.1); `auto`: every address of the pod's "
             "IP family (from POD_IP), `::` or 0.0.0.0")  # fmt: skip
    add("--port", type=int, default=5000, help="port to listen on (default 5000)")
    add("--engine-url", required=True, help="the engine's base URL, e.g. http://127.0.0.1:5005")
    add("--engine-api", choices=ENGINE_APIS, default="sglang",
        help="sglang: native /generate; openai: OpenAI routes only (vLLM)")  # fmt: skip
    add("--served-model-name", default=None, help="model name sent to OpenAI-style engines")
    add("--max-concurrency", type=_positive_int, default=256,
        help="inference requests in flight before answering 429 (default 256)")  # fmt: skip
    add("--ready-check-path", default=None,
        help="engine GET route doing a real generation (e.g. /health_generate); "
             "without it, readiness POSTs a one-token /v1/completions")  # fmt: skip
    add("--ready-cache-s", type=_non_negative_float, default=1.0,
        help="seconds a readiness result is reused (default 1.0)")  # fmt: skip
    add("--ready-timeout-s", type=_non_negative_float, default=4.0,
        help="seconds the readiness check may take (default 4.0)")  # fmt: skip
    add("--connect-timeout-s", type=_non_negative_float, default=3.0,
        help="seconds to connect to the engine before answering 502 (default 3.0)")  # fmt: skip
    add("--progress-file", default=os.environ.get(PROGRESS_FILE_ENV),
        help="the leader's startup report, served in /readyz while the engine is not ready "
             f"(default ${PROGRESS_FILE_ENV})")  # fmt: skip
    add("--no-token", action="store_true",
        help=f"answer inference requests from anyone when {TOKEN_ENV} is not set "
             "(local debugging only; without it the forwarder refuses to start)")  # fmt: skip
    add("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def with_token(
    config: ForwarderConfig, args: argparse.Namespace, environ: MutableMapping[str, str]
) -> ForwarderConfig:
    """The config with the token taken (and removed, so nothing started later inherits
    it) from `environ`; refuses a forwarder with no token unless --no-token."""
    token = environ.pop(TOKEN_ENV, "")
    if token and args.no_token:
        build_parser().error(f"--no-token contradicts {TOKEN_ENV}, which is set")
    if not token and not args.no_token:
        build_parser().error(
            f"no token: set {TOKEN_ENV} (the endpoint's secret), or pass --no-token to "
            "answer anyone (local debugging only)"
        )
    return dataclasses.replace(config, token=token or None)


def parse_args(argv: Sequence[str] | None = None) -> tuple[ForwarderConfig, argparse.Namespace]:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.ready_check_path is not None and not args.ready_check_path.startswith("/"):
        parser.error("--ready-check-path must start with /")
    config = ForwarderConfig(
        engine_url=args.engine_url,
        engine_api=args.engine_api,
        served_model_name=args.served_model_name,
        max_concurrency=args.max_concurrency,
        ready_check_path=args.ready_check_path,
        ready_cache_s=args.ready_cache_s,
        ready_timeout_s=args.ready_timeout_s,
        connect_timeout_s=args.connect_timeout_s,
        progress_file=args.progress_file,
    )
    return config, args


def main(argv: Sequence[str] | None = None) -> None:
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments and arguments[0] in drain.COMMANDS:
        # The preStop commands (`drain`, `wait-drained`) ride on this program, which every
        # engine image carries, so no container needs another entry point.
        drain.main(arguments)
        return
    config, args = parse_args(arguments)
    config = with_token(config, args, os.environ)
    if args.host == "auto":
        args.host = auto_listen_host(os.environ.get("POD_IP"))
    try:
        app = create_app(config)
    except ValueError as exc:
        build_parser().error(str(exc))
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s"
    )
    log.info(
        "forwarder on %s:%s -> %s engine at %s (max %d in flight, readiness: %s)",
        args.host, args.port, config.engine_api, config.engine_url, config.max_concurrency,
        config.ready_check_path or "one-token POST /v1/completions",
    )  # fmt: skip
    if config.token is None:
        log.warning("--no-token: anyone who reaches this port can use the engine")
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        # httptools, closing a connection whose request head is not in within the timeout
        http=header_timeout_protocol(DEFAULT_HEADER_TIMEOUT_S),
        lifespan="on",
        access_log=False,
        proxy_headers=False,
        log_level=args.log_level,
        server_header=False,
        date_header=False,
        timeout_keep_alive=30,
    )


if __name__ == "__main__":
    main()
