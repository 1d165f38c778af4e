"""The command-line options `llm-launch serve` and `llm-launch gateway` share.

Both commands serve the completion routes behind the same guard (`api/guard.py`), so a
setting they share has one flag, one LLM_LAUNCH_* variable, one default and one help text,
declared here once: a deployment that sets the variable for both (deploy/kubernetes's
`llm-launch-settings` ConfigMap) gets the same behaviour from both. Each is an `Annotated`
type, used as `inference_timeout: InferenceTimeout = DEFAULT_INFERENCE_TIMEOUT_S`; the
flag is named after the parameter, as Typer does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llm_launch.http_timeouts import DEFAULT_HEADER_TIMEOUT_S, DEFAULT_KEEP_ALIVE_TIMEOUT_S

__all__ = [
    "DEFAULT_HEADER_TIMEOUT_S",
    "DEFAULT_INFERENCE_TIMEOUT_S",
    "DEFAULT_KEEP_ALIVE_TIMEOUT_S",
    "DEFAULT_LOG_LEVEL",
    "DEFAULT_MAX_REQUEST_BYTES",
    "ApiKeysFile",
    "DataDir",
    "HeaderTimeout",
    "InferenceTimeout",
    "KeepAliveTimeout",
    "LogLevel",
    "MaxRequestBytes",
]

DEFAULT_INFERENCE_TIMEOUT_S = 600.0
DEFAULT_MAX_REQUEST_BYTES = 1024 * 1024
DEFAULT_LOG_LEVEL = "info"

DataDir = Annotated[
    Path | None,
    typer.Option(envvar="LLM_LAUNCH_DATA_DIR", help="Where the default SQLite file lives."),
]
ApiKeysFile = Annotated[
    Path | None,
    typer.Option(envvar="LLM_LAUNCH_API_KEYS_FILE", help="File of OWNER:KEY lines."),
]
InferenceTimeout = Annotated[
    float,
    typer.Option(
        envvar="LLM_LAUNCH_INFERENCE_TIMEOUT_S",
        help="seconds to wait for an answer to start, or between streamed chunks (504 after)",
    ),
]
MaxRequestBytes = Annotated[
    int,
    typer.Option(
        envvar="LLM_LAUNCH_MAX_REQUEST_BYTES",
        min=1,
        help="largest request body accepted; a larger one is a 413 and is not read",
    ),
]
HeaderTimeout = Annotated[
    float,
    typer.Option(
        envvar="LLM_LAUNCH_HEADER_TIMEOUT_S",
        min=0.1,
        help="seconds a client has to send a request's line and headers (from connecting, "
        "or from the first byte of a further request; the connection is closed after), "
        "and the longest pause while its body arrives (408 after)",
    ),
]
KeepAliveTimeout = Annotated[
    int,
    typer.Option(
        envvar="LLM_LAUNCH_KEEP_ALIVE_TIMEOUT_S",
        min=1,
        help="seconds an idle kept-alive connection stays open",
    ),
]
LogLevel = Annotated[str, typer.Option(envvar="LLM_LAUNCH_LOG_LEVEL")]
