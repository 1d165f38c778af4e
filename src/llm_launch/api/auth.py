"""Who is calling: the owner behind an API key (basic auth username, Bearer or x-api-key).

`api.guard.RequestGuard` authenticates every protected request before anything reads its
body and leaves the owner in the request's state; `current_owner` (the routes'
dependency, also called by the completion routes) reads it from there.

With no keys configured the server runs for one local owner (and `serve` refuses to
bind anything but loopback, so that mode is never exposed).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from fastapi import Request

from llm_launch.config.api_keys import LOCAL_OWNER, ApiKeys
from llm_launch.domain.errors import Unauthenticated

# The key in the ASGI scope's "state" (Starlette's `request.state`) that holds the owner.
OWNER_STATE_KEY = "owner"


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The API key in the request headers, from whichever of the three places it was sent."""
    header = headers.get("x-api-key")
    if header:
        return header
    authorization = headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    if scheme.lower() == "basic" and credentials.strip():
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        username, _, password = decoded.partition(":")
        # Launch's client sends the key as the username; some tools put it in the password.
        return username or password or None
    return None


def authenticate(keys: ApiKeys, headers: Mapping[str, str]) -> str:
    """The owner whose key the headers carry, or Unauthenticated."""
    if not keys.enabled:
        return LOCAL_OWNER
    key = presented_key(headers)
    if key is None:
        raise Unauthenticated(
            "missing API key: send it as HTTP basic auth username, 'Authorization: Bearer KEY' "
            "or 'x-api-key: KEY'"
        )
    owner = keys.owner_for(key)
    if owner is None:
        raise Unauthenticated("invalid API key")
    return owner


async def current_owner(request: Request) -> str:
    """FastAPI dependency: the authenticated owner, or 401.

    The guard has normally authenticated the request already; authenticating here too
    keeps a route safe even if it were reached without the guard."""
    owner = request.scope.get("state", {}).get(OWNER_STATE_KEY)
    if isinstance(owner, str):
        return owner
    keys: ApiKeys = request.app.state.api_keys
    return authenticate(keys, request.headers)
