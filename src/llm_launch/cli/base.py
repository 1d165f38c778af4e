"""What every `llm-launch` command shares: the Typer apps, the consoles, one way to fail,
and reading a request body from a file."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from llm_launch.config.loader import CatalogError

app = typer.Typer(
    no_args_is_help=True, help="llm-launch: a control plane for LLM inference endpoints."
)
endpoints_app = typer.Typer(
    no_args_is_help=True, help="Create, list, inspect and delete endpoints."
)
app.add_typer(endpoints_app, name="endpoints")
console = Console()
errors = Console(stderr=True)

WEIGHTS_VOLUME_HELP = (
    "where pods keep downloaded checkpoints: emptyDir (one copy per pod, downloaded again "
    "on every group recreate), hostPath:/DIR (a cache per node, one directory per "
    "checkpoint; needs a cluster that allows hostPath volumes) or pvc:CLAIM (an existing "
    "ReadWriteMany claim, one subdirectory per checkpoint)"
)


def fail(message: str) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code=1)


def read_body(path: Path) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
        body = json.loads(text)
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise fail(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise fail(f"{path} must hold a JSON object")
    return body


@contextmanager
def explained() -> Iterator[None]:
    """Turn a refused request or bad configuration into one line on stderr and exit 1."""
    from llm_launch.domain.errors import InvalidRequest

    try:
        yield
    except InvalidRequest as exc:
        raise fail("invalid request: " + "; ".join(str(e) for e in exc.errors)) from exc
    except (CatalogError, ValueError) as exc:
        raise fail(str(exc)) from exc


def parse_weights_volume(text: str) -> Any:
    """The parsed weights volume setting; a ValueError (KubernetesConfigError) says the fix."""
    from llm_launch.backends.kubernetes.config import WeightsVolume

    return WeightsVolume.parse(text)
