"""Who is calling: the owner behind an API key (basic auth username, Bearer or x-api-key).

With no keys configured the server runs for one local owner (and `serve` refuses to
bind anything but loopback, so that mode is never exposed).
"""

from __future__ import annotations

import base64
import binascii

from fastapi import Request

from llm_launch.config.api_keys import LOCAL_OWNER, ApiKeys
from llm_launch.domain.errors import Unauthenticated


def presented_key(request: Request) -> str | None:
    """The API key in the request, from whichever of the three places it was sent."""
    header = request.headers.get("x-api-key")
    if header:
        return header
    authorization = request.headers.get("authorization", "")
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


async def current_owner(request: Request) -> str:
    """FastAPI dependency: the authenticated owner, or 401."""
    keys: ApiKeys = request.app.state.api_keys
    if not keys.enabled:
        return LOCAL_OWNER
    key = presented_key(request)
    if key is None:
        raise Unauthenticated(
            "missing API key: send it as HTTP basic auth username, 'Authorization: Bearer KEY' "
            "or 'x-api-key: KEY'"
        )
    owner = keys.owner_for(key)
    if owner is None:
        raise Unauthenticated("invalid API key")
    return owner
