"""SGLang's own argument parser, run in its own virtualenv as a subprocess.

Used by tests/conformance/. `ensure_sglang_parser()` installs it with
scripts/install-sglang-parser (idempotent; the virtualenv lives in the user's cache, where
the script says) and returns its interpreter; `SglangParser.parse` parses engine command lines
with `sglang.srt.server_args.prepare_server_args` and addresses (`--dist-init-addr` values)
with `sglang.srt.utils.network.NetworkAddress.parse`, and returns plain JSON results.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO / "scripts" / "install-sglang-parser"
INSTALL_TIMEOUT_S = 900

# Runs inside that virtualenv. Reads {"argvs": [[...], ...], "addresses": [...]} on stdin and
# writes one JSON document on stdout.
#
# Parse only, touch nothing: in sglang 0.5.23 `prepare_server_args` is argparse plus
# `ServerArgs.from_cli_args`, and `ServerArgs.__post_init__` is deliberately empty. Everything
# that looks at GPUs, the model's config or free ports happens later, in
# `ServerArgs.resolve_once()` (the resolution pipeline), which the launcher calls and we never
# do. So the parsed record holds exactly what the command line said, after SGLang's own
# types, choices and option matching (an unknown or ambiguous flag is an error here).
_PROBE = r"""
import contextlib, io, json, sys

from sglang.srt.server_args import prepare_server_args
from sglang.srt.utils.network import NetworkAddress
import msgspec


def jsonable(value):
    try:
        json.dumps(value)
        return value
    except TypeError:
        return repr(value)


def parse_argv(argv):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = prepare_server_args(list(argv))
    except SystemExit as exc:  # argparse reports bad command lines by exiting
        return {"error": f"exit {exc.code}: {err.getvalue().strip().splitlines()[-1:]}"}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    fields = msgspec.structs.asdict(args)
    return {"args": {k: jsonable(v) for k, v in fields.items()}}


def parse_address(address):
    try:
        na = NetworkAddress.parse(address)
    except ValueError as exc:
        return {"error": str(exc)}
    return {"host": na.host, "port": na.port, "is_ipv6": na.is_ipv6}


request = json.load(sys.stdin)
json.dump(
    {
        "argvs": [parse_argv(argv) for argv in request.get("argvs", [])],
        "addresses": [parse_address(a) for a in request.get("addresses", [])],
    },
    sys.stdout,
)
"""


class SglangParserUnavailable(RuntimeError):
    """The install script failed; the message carries its output."""


def ensure_sglang_parser() -> Path:
    """Install the parser's virtualenv if it is missing or incomplete; return its
    interpreter (the script's last line of output)."""
    result = subprocess.run(
        [str(INSTALL_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    python = Path(lines[-1]) if lines else None
    if result.returncode != 0 or python is None or not python.exists():
        raise SglangParserUnavailable(
            f"{INSTALL_SCRIPT} exited {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return python


@dataclass(frozen=True)
class ParsedArgv:
    """SGLang's reading of one command line: its fields, or why it refused it."""

    argv: tuple[str, ...]
    args: dict[str, Any] | None
    error: str | None

    def field(self, name: str) -> Any:
        assert self.args is not None, f"SGLang refused {list(self.argv)}: {self.error}"
        assert name in self.args, f"SGLang's ServerArgs has no field {name!r}"
        return self.args[name]


@dataclass(frozen=True)
class SglangReading:
    argvs: list[ParsedArgv]
    addresses: list[dict[str, Any]]  # per address: {"host", "port", "is_ipv6"} or {"error"}


@dataclass(frozen=True)
class SglangParser:
    """One call runs one interpreter (importing SGLang's parser takes ~2 s): batch."""

    python: Path

    def parse(
        self, argvs: Sequence[Sequence[str]] = (), addresses: Sequence[str] = ()
    ) -> SglangReading:
        """`prepare_server_args` of each argv; `NetworkAddress.parse` of each address."""
        request = {"argvs": [list(a) for a in argvs], "addresses": list(addresses)}
        result = subprocess.run(
            [str(self.python), "-c", _PROBE],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(f"the SGLang probe failed ({result.returncode}):\n{result.stderr}")
        document = json.loads(result.stdout)
        parsed = [
            ParsedArgv(tuple(argv), r.get("args"), r.get("error"))
            for argv, r in zip(argvs, document["argvs"], strict=True)
        ]
        return SglangReading(parsed, document["addresses"])
