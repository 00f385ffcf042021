"""Access tokens from an external identity provider, verified against its JWKS.

With ``HUDDLE_JWT_JWKS_URL`` set, Huddle also accepts RS256/ES256/EdDSA tokens signed by
that issuer (Better Auth's JWT plugin, Clerk, Auth0, Keycloak, ...). The key set is
cached for ``HUDDLE_JWT_JWKS_CACHE_SECONDS`` and fetched again early when a token names
a key id the cache does not know (key rotation), at most once every 30 seconds.

Each ``(issuer, sub)`` maps to one local user, created on first sight from the
``email`` claim. An existing local account with that email is linked only when the
token says ``email_verified: true``; otherwise the token is refused, so an issuer that
does not verify emails cannot take over a local account.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Any

import httpx
import jwt
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from huddle.auth.models import ExternalIdentity, User
from huddle.config import Settings
from huddle.core.errors import InvalidToken, ServiceUnavailable

log = logging.getLogger("huddle.auth.external")

ALGORITHMS = ("RS256", "ES256", "EdDSA")
_REFETCH_INTERVAL = 30.0
_USERNAME_CLEAN = re.compile(r"[^a-z0-9._-]+")


class ExternalTokenVerifier:
    def __init__(self, settings: Settings, http: httpx.AsyncClient | None = None) -> None:
        assert settings.jwt_jwks_url
        self._settings = settings
        self._url = settings.jwt_jwks_url
        self._http = http or httpx.AsyncClient(timeout=5.0)
        self._keys: dict[str, jwt.PyJWK] = {}
        self._anonymous: list[jwt.PyJWK] = []
        self.refetch_interval = _REFETCH_INTERVAL
        self._fetched_at = -1e9
        self._attempted_at = -1e9
        self._lock = asyncio.Lock()
        self._users: dict[tuple[str, str], uuid.UUID] = {}

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _refresh_keys(self, force: bool) -> None:
        """Fetch the key set when stale (or, with ``force``, for an unknown kid).

        Attempts (failed ones too) are at least ``refetch_interval`` apart, and with keys
        in hand nobody waits behind a fetch already in progress: an unreachable
        provider costs one timeout per interval, not one per request.
        """
        if self._lock.locked():
            if not self._keys:
                async with self._lock:  # the first fetch is under way: wait for it
                    pass
            return
        now = time.monotonic()
        since_attempt = now - self._attempted_at
        stale = now - self._fetched_at >= self._settings.jwt_jwks_cache_seconds
        if since_attempt < self.refetch_interval or not (force or stale):
            return
        async with self._lock:
            if time.monotonic() - self._attempted_at < self.refetch_interval:
                return
            self._attempted_at = time.monotonic()
            try:
                response = await self._http.get(self._url)
                response.raise_for_status()
                keyset = jwt.PyJWKSet.from_dict(response.json())
            except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
                log.warning("could not fetch JWKS from %s: %s", self._url, exc)
                return
            self._keys = {key.key_id: key for key in keyset.keys if key.key_id}
            self._anonymous = [key for key in keyset.keys if not key.key_id]
            self._fetched_at = time.monotonic()

    async def _key_for(self, kid: str | None) -> jwt.PyJWK:
        await self._refresh_keys(force=False)
        if kid is not None and kid not in self._keys:
            await self._refresh_keys(force=True)
        if not self._keys and not self._anonymous:
            raise ServiceUnavailable("The identity provider's keys are unavailable")
        if kid is not None and kid in self._keys:
            return self._keys[kid]
        if kid is None and len(self._anonymous) + len(self._keys) == 1:
            return (self._anonymous or list(self._keys.values()))[0]
        raise InvalidToken("Token signed with an unknown key")

    async def verify(self, token: str, header: dict[str, Any]) -> dict[str, Any]:
        """Verify signature, expiry, issuer and audience; return the claims."""
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise InvalidToken("Unsupported token algorithm")
        kid = header.get("kid")
        key = await self._key_for(kid if isinstance(kid, str) else None)
        settings = self._settings
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[alg],
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                options={
                    "require": ["sub", "exp"] + (["iss"] if settings.jwt_issuer else []),
                    "verify_aud": settings.jwt_audience is not None,
                },
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("Token expired") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken() from exc

    async def user_id_for(
        self, claims: dict[str, Any], sessions: async_sessionmaker[AsyncSession]
    ) -> uuid.UUID:
        """The local user of these claims, linked or created on first sight.

        Runs in its own short transaction so a GET request can provision a user.
        """
        issuer = str(claims.get("iss") or self._settings.jwt_issuer or self._url)
        subject = str(claims["sub"])
        cached = self._users.get((issuer, subject))
        if cached is not None:
            return cached
        for _ in range(2):
            async with sessions() as session:
                try:
                    user_id = await _find_or_create(session, issuer, subject, claims)
                    await session.commit()
                except IntegrityError:
                    await session.rollback()
                    continue  # a concurrent request created it: look again
            self._users[(issuer, subject)] = user_id
            return user_id
        raise InvalidToken("Could not link this identity to an account")


async def _find_or_create(
    session: AsyncSession, issuer: str, subject: str, claims: dict[str, Any]
) -> uuid.UUID:
    linked = await session.scalar(
        select(ExternalIdentity.user_id).where(
            ExternalIdentity.issuer == issuer, ExternalIdentity.subject == subject
        )
    )
    if linked is not None:
        return linked
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email or len(email) > 320:
        raise InvalidToken("The token has no email claim to create an account from")
    email = email.strip().lower()
    user = await session.scalar(select(User).where(User.email == email))
    if user is None:
        user = User(
            email=email,
            username=await _free_username(session, claims, email),
            full_name=str(claims.get("name") or "")[:200],
            hashed_password=None,
        )
        session.add(user)
        await session.flush()
    elif claims.get("email_verified") is not True:
        raise InvalidToken(
            "An account with this email exists; the token must carry email_verified=true to link it"
        )
    session.add(ExternalIdentity(user_id=user.id, issuer=issuer, subject=subject))
    await session.flush()
    return user.id


async def _free_username(session: AsyncSession, claims: dict[str, Any], email: str) -> str:
    wanted = claims.get("preferred_username") or claims.get("nickname") or email.split("@")[0]
    base = _USERNAME_CLEAN.sub("-", str(wanted).lower()).strip("._-")[:24] or "user"
    if len(base) < 3:
        base = (base + "-user")[:24]
    candidate = base
    for n in range(2, 1000):
        if await session.scalar(select(User.id).where(User.username == candidate)) is None:
            return candidate
        candidate = f"{base}-{n}"
    return f"{base}-{uuid.uuid4().hex[:6]}"
