"""What both apps put in front of their routes: `api/app.py` (`serve`'s) and
`api/gateway_app.py` (a `gateway` process's).

Called once per app, before it starts: the error handlers, then the middleware, in the one
order that keeps the completion routes safe. `RequestGuard` is outermost (it
authenticates and reads a bounded body before anything else looks at the request), and
`InferenceGateway` is inside it, before FastAPI routes anything (the lean path). Kept in
one place so the two apps cannot drift apart: a gateway process must answer exactly as
the API server does.

`uvicorn_config` is what both servers hand uvicorn: the app behind its `InferenceFront`
(api/gateway.py: the completion routes' POSTs taken before FastAPI's middleware, through a
guard of the same settings), on the header-timeout protocol with no access-log line per
completion and no X-Forwarded-* rewriting (nothing here reads the client's address).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import uvicorn
from fastapi import FastAPI

from llm_launch.api.errors import install_error_handlers
from llm_launch.api.gateway import ROUTES, InferenceGateway, front
from llm_launch.api.guard import RequestGuard
from llm_launch.config.api_keys import ApiKeys
from llm_launch.http_timeouts import header_timeout_protocol

__all__ = ["cancel_and_wait", "install_guarded_inference", "uvicorn_config"]


def install_guarded_inference(
    app: FastAPI, keys: ApiKeys, *, max_request_bytes: int, header_timeout_s: float
) -> None:
    """The keys, the error handlers, the lean completion routes and, around them, the guard."""
    app.state.api_keys = keys
    install_error_handlers(app)
    # Starlette runs the middleware added last outermost.
    app.add_middleware(InferenceGateway)
    app.add_middleware(
        RequestGuard,
        keys=keys,
        max_body_bytes=max_request_bytes,
        body_pause_s=header_timeout_s,  # the same patience for a head and a body
    )
    # The way in `uvicorn_config` serves: the same guard settings, in front of FastAPI.
    app.state.inference_front = front(app, keys, max_request_bytes, header_timeout_s)


def uvicorn_config(
    app: FastAPI, *, header_timeout_s: float, keep_alive_s: int, log_level: str, **where: Any
) -> uvicorn.Config:
    """uvicorn's settings for an app `install_guarded_inference` set up; `where`: host and
    port, when uvicorn binds them itself."""
    return uvicorn.Config(
        app.state.inference_front,
        log_level=log_level,
        http=header_timeout_protocol(header_timeout_s, quiet_paths=ROUTES),
        proxy_headers=False,
        timeout_keep_alive=keep_alive_s,
        **where,
    )


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Stop a background task of an app's lifespan (the table's refresh, the reconciler)
    and wait until it has."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
