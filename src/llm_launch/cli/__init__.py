"""The `llm-launch` command: run the server (`serve`) and inference-only processes beside
it (`gateway`), show what a request becomes (`plan`, `render`), and manage endpoints on a
server (`endpoints ...`).

Each submodule registers its commands on the Typer app of `cli.base` when imported.
"""

from llm_launch.cli import endpoints, gateway, manifests, serve
from llm_launch.cli.base import app

__all__ = ["app", "endpoints", "gateway", "manifests", "serve"]
