"""Who is calling: the Bearer token of a request resolved to an active local user.

Three kinds of Bearer token are accepted:

* Huddle's own access JWTs (HS256, ``type: access``);
* personal API tokens (``hud_...``), looked up by their SHA-256;
* with ``HUDDLE_JWT_JWKS_URL`` set, RS256/ES256/EdDSA tokens of that external issuer.

Any other algorithm (``none`` included) is refused. Deactivated users get 401 on
every kind of token.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated

import jwt
from fastapi import BackgroundTasks, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import State

from huddle.auth.external import ALGORITHMS, ExternalTokenVerifier
from huddle.auth.models import ApiToken, User
from huddle.auth.service import AuthRuntime
from huddle.core.db import Database, SessionDep
from huddle.core.errors import InvalidToken, NotAuthenticated
from huddle.core.requestid import set_user_id
from huddle.core.time import utcnow
from huddle.core.tokens import ACCESS_ALGORITHM, API_TOKEN_PREFIX, decode_access_token, hash_secret

_bearer = HTTPBearer(auto_error=False, description="An access token or a personal API token.")
_TOUCH_EVERY = timedelta(minutes=1)


def get_runtime(request: Request) -> AuthRuntime:
    runtime: AuthRuntime = request.app.state.auth
    return runtime


AuthRuntimeDep = Annotated[AuthRuntime, Depends(get_runtime)]


async def touch_api_token(db: Database, token_id: uuid.UUID) -> None:
    """Record ``last_used_at`` after the response, in its own short transaction."""
    async with db.write_session() as session:
        await session.execute(
            update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=utcnow())
        )
        await session.commit()


TouchToken = Callable[[uuid.UUID], None]


async def _user_from_api_token(session: AsyncSession, touch: TouchToken, token: str) -> User:
    row = (
        await session.execute(
            select(ApiToken, User)
            .join(User, User.id == ApiToken.user_id)
            .where(ApiToken.token_hash == hash_secret(token))
        )
    ).first()
    if row is None:
        raise InvalidToken()
    api_token, user = row
    now = utcnow()
    if api_token.revoked_at is not None:
        raise InvalidToken("API token revoked")
    if api_token.expires_at is not None and api_token.expires_at <= now:
        raise InvalidToken("API token expired")
    if api_token.last_used_at is None or now - api_token.last_used_at > _TOUCH_EVERY:
        touch(api_token.id)
    return user


async def _user_from_jwt(session: AsyncSession, state: State, token: str) -> User:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidToken() from exc
    alg = header.get("alg")
    if alg == ACCESS_ALGORITHM:
        claims = decode_access_token(token, state.settings.signing_key)
        try:
            user_id = uuid.UUID(str(claims["sub"]))
        except ValueError as exc:
            raise InvalidToken() from exc
    elif alg in ALGORITHMS and state.external_verifier is not None:
        verifier: ExternalTokenVerifier = state.external_verifier
        claims = await verifier.verify(token, header)
        user_id = await verifier.user_id_for(claims, state.db.write_session)
    else:
        raise InvalidToken("Unsupported token algorithm")
    user = await session.get(User, user_id)
    if user is None:
        raise InvalidToken()
    return user


async def get_current_user(
    request: Request,
    session: SessionDep,
    background: BackgroundTasks,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    """The active user behind the request's Bearer token (401 otherwise)."""
    if credentials is None:
        raise NotAuthenticated()

    def touch(token_id: uuid.UUID) -> None:
        background.add_task(touch_api_token, request.app.state.db, token_id)

    user = await user_for_token(session, request.app.state, credentials.credentials, touch)
    request.state.user_id = user.id
    set_user_id(user.id)
    return user


async def user_for_token(
    session: AsyncSession, state: State, token: str, touch: TouchToken
) -> User:
    """The active user behind a Bearer token (access JWT, API token or external JWT);
    :class:`InvalidToken` otherwise. ``state`` is the app's state; ``touch`` records an
    API token's use later. Shared by HTTP requests and the WebSocket handshake."""
    token = token.strip()
    if not token or len(token) > 8192:
        raise InvalidToken()
    if token.startswith(API_TOKEN_PREFIX):
        user = await _user_from_api_token(session, touch, token)
    else:
        user = await _user_from_jwt(session, state, token)
    if not user.is_active:
        raise InvalidToken("Account is deactivated")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_user_outside_transaction(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    """The caller, read in a short read-only session that is closed before the endpoint
    runs: for routes that wait on something slow (a language model) and write in units of
    work of their own — on SQLite a POST's request session would hold the write lock for
    the whole wait."""
    if credentials is None:
        raise NotAuthenticated()
    user = await user_outside_transaction(request.app.state, credentials.credentials)
    request.state.user_id = user.id
    return user


async def user_outside_transaction(state: State, token: str) -> User:
    """:func:`user_for_token` in a short read session of its own; an API token's use is
    recorded in the background. For callers outside a request's session (the
    Idempotency-Key scoping, the MCP endpoint, routes that wait on a model)."""

    def touch(token_id: uuid.UUID) -> None:
        state.background.spawn(touch_api_token(state.db, token_id), name="touch-api-token")

    async with state.db.read_session() as session:
        return await user_for_token(session, state, token, touch)


UserOutsideTransaction = Annotated[User, Depends(get_user_outside_transaction)]


def client_address(request: Request) -> str:
    """The caller's address as the server sees it (proxy headers are not trusted here)."""
    return request.client.host if request.client else "unknown"


ClientAddress = Annotated[str, Depends(client_address)]
