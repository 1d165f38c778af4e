"""What both apps put in front of their routes: `api/app.py` (`serve`'s) and
`api/gateway_app.py` (a `gateway` process's).

Called once per app, before it starts: the error handlers, then the middleware, in the one
order that keeps the completion routes safe. `RequestGuard` is outermost (it
authenticates and reads a bounded body before anything else looks at the request), and
`InferenceGateway` is inside it, before FastAPI routes anything (the lean path). Kept in
one place so the two apps cannot drift apart: a gateway process must answer exactly as
the API server does.
"""

from __future__ import annotations

from fastapi import FastAPI

from llm_launch.api.errors import install_error_handlers
from llm_launch.api.gateway import InferenceGateway
from llm_launch.api.guard import RequestGuard
from llm_launch.config.api_keys import ApiKeys

__all__ = ["install_guarded_inference"]


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
