"""TURN credentials for WebRTC calls, in coturn's REST API scheme (``use-auth-secret``).

The username is ``<expiry unix time>:<user id>`` and the password
``base64(HMAC-SHA1(secret, username))``; coturn, configured with the same
``static-auth-secret``, accepts them until the expiry without any call to Huddle.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid

from fastapi import APIRouter, Request
from pydantic import BaseModel

from huddle.access.deps import CurrentCaller
from huddle.config import Settings
from huddle.core.errors import ERROR_RESPONSES, ServiceUnavailable

router = APIRouter(prefix="/api/webrtc", tags=["calls"], responses=ERROR_RESPONSES)


class TurnCredentials(BaseModel):
    username: str
    password: str
    ttl: int
    uris: list[str]


def turn_credentials(
    secret: str, user_id: uuid.UUID, ttl: int, uris: list[str], now: float | None = None
) -> TurnCredentials:
    expiry = int(now if now is not None else time.time()) + ttl
    username = f"{expiry}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return TurnCredentials(
        username=username, password=base64.b64encode(digest).decode(), ttl=ttl, uris=uris
    )


@router.get("/turn-credentials", response_model=TurnCredentials)
async def get_turn_credentials(caller: CurrentCaller, request: Request) -> TurnCredentials:
    """Time-limited TURN credentials for the caller (503 when no TURN server is set up)."""
    settings: Settings = request.app.state.settings
    if not settings.turn_secret:
        raise ServiceUnavailable("No TURN server is configured (HUDDLE_TURN_SECRET)")
    return turn_credentials(settings.turn_secret, caller.id, settings.turn_ttl, settings.turn_uris)
