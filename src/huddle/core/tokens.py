"""Opaque secrets (refresh and API tokens) and Huddle's own JWT access tokens."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

import jwt

from huddle.core.errors import InvalidToken

ACCESS_ALGORITHM = "HS256"
API_TOKEN_PREFIX = "hud_"  # noqa: S105 - a marker, not a secret


def new_secret(prefix: str = "") -> str:
    return prefix + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """SHA-256 of a high-entropy secret: enough for random tokens (not for passwords)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def encode_access_token(user_id: uuid.UUID, key: str, now: datetime, ttl: int) -> str:
    claims = {
        "sub": str(user_id),
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl)).timestamp()),
        "jti": uuid.uuid4().hex,
        "type": "access",
    }
    return jwt.encode(claims, key, algorithm=ACCESS_ALGORITHM)


def decode_access_token(token: str, key: str) -> dict[str, Any]:
    """Verify one of our access tokens; any defect is :class:`InvalidToken`."""
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ACCESS_ALGORITHM],
            options={"require": ["sub", "exp", "iat", "jti", "type"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("Token expired") from exc
    except jwt.PyJWTError as exc:
        raise InvalidToken() from exc
    if claims.get("type") != "access":
        raise InvalidToken("Not an access token")
    return claims
