"""Accounts, logins, refresh-token rotation and personal API tokens."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from huddle.auth.models import ApiToken, RefreshToken, User
from huddle.auth.schemas import TokenPair, UserCreate, UserUpdate
from huddle.config import Settings
from huddle.core.errors import AppError, Conflict, InvalidToken, NotFound, RateLimited
from huddle.core.ids import new_id
from huddle.core.pagination import PageParams, paginate
from huddle.core.passwords import PasswordHasher
from huddle.core.ratelimit import RateLimiter
from huddle.core.time import utcnow
from huddle.core.tokens import (
    API_TOKEN_PREFIX,
    encode_access_token,
    hash_secret,
    new_secret,
)


class InvalidCredentials(AppError):
    status_code, code, message = 401, "invalid_credentials", "Incorrect username or password"


class AccountDisabled(AppError):
    status_code, code, message = 401, "account_disabled", "This account is deactivated"


class RefreshTokenReused(InvalidToken):
    """A used refresh token came back: its whole family is revoked, and that must stick."""

    message = "Refresh token already used; all sessions from that login were signed out"
    keep_changes = True


@dataclass
class AuthRuntime:
    """What the auth services need besides a session: settings, hasher, rate limiter.

    ``read_session`` opens a short read-only session: password checks run outside the
    request's transaction, because on SQLite a write transaction holds the database
    lock and must not stay open through a deliberately slow Argon2 verification.
    """

    settings: Settings
    hasher: PasswordHasher
    limiter: RateLimiter
    read_session: async_sessionmaker[AsyncSession]


# --- accounts -------------------------------------------------------------------------


async def _ensure_unique(
    session: AsyncSession, email: str | None, username: str | None, exclude: uuid.UUID | None
) -> None:
    for field, value in (("email", email), ("username", username)):
        if value is None:
            continue
        query = select(User.id).where(getattr(User, field) == value)
        if exclude is not None:
            query = query.where(User.id != exclude)
        if await session.scalar(query) is not None:
            raise Conflict(f"That {field} is already taken", details={"field": field})


async def _flush_unique(session: AsyncSession) -> None:
    """Flush, turning a lost race on a unique column into a 409."""
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict("That email or username is already taken") from exc


async def register(
    session: AsyncSession,
    runtime: AuthRuntime,
    data: UserCreate,
    *,
    client_address: str,
    is_superuser: bool = False,
) -> User:
    """Create an account (rate-limited per client address)."""
    wait = await runtime.limiter.hit(
        f"register:addr:{client_address}", runtime.settings.register_rate
    )
    if wait is not None:
        raise RateLimited(wait, "Too many registrations from this address")
    # Hash before the first query: the transaction (and SQLite's lock) starts there.
    hashed = await runtime.hasher.hash(data.password)
    await _ensure_unique(session, data.email, data.username, None)
    user = User(
        email=data.email,
        username=data.username,
        full_name=data.full_name,
        hashed_password=hashed,
        is_superuser=is_superuser,
    )
    session.add(user)
    await _flush_unique(session)
    return user


async def update_account(
    session: AsyncSession, runtime: AuthRuntime, user: User, data: UserUpdate
) -> User:
    """Apply the caller's own changes; a new password signs out every refresh token.

    Wrong current passwords count against the account's failed-login limit, so a
    stolen access token cannot be used to guess the password.
    """
    if data.current_password is not None and (data.password or data.email):
        key = f"login:acct:{user.id}"
        wait = await runtime.limiter.hit(key, runtime.settings.login_rate)
        if wait is not None:
            raise RateLimited(wait, "Too many failed password checks; try again later")
        ok, _ = await runtime.hasher.verify(data.current_password, user.hashed_password)
        if not ok:
            raise InvalidCredentials("Current password is incorrect")
        await runtime.limiter.undo(key)
    await _ensure_unique(session, data.email, data.username, user.id)
    if data.email is not None:
        user.email = data.email
    if data.username is not None:
        user.username = data.username
    if data.full_name is not None:
        user.full_name = data.full_name
    if data.password is not None:
        user.hashed_password = await runtime.hasher.hash(data.password)
    await _flush_unique(session)
    if data.password is not None:
        await revoke_all_refresh_tokens(session, user.id)
    return user


async def get_user_by_login(session: AsyncSession, login: str) -> User | None:
    login = login.strip().lower()
    column = User.email if "@" in login else User.username
    return await session.scalar(select(User).where(column == login))


# --- login and refresh ----------------------------------------------------------------


async def login(
    session: AsyncSession,
    runtime: AuthRuntime,
    login_name: str,
    password: str,
    *,
    client_address: str,
) -> TokenPair:
    """Check a password login and open a new token family.

    Failures count against both the account and the client address; either over
    ``HUDDLE_RATE_LOGIN`` answers 429 with ``Retry-After`` until its window ends.
    """
    async with runtime.read_session() as lookup:
        found = await get_user_by_login(lookup, login_name)
        user_id = found.id if found else None
        stored_hash = found.hashed_password if found else None
    attempt = await count_login_attempt(runtime, user_id, login_name, client_address)
    ok, new_hash = await runtime.hasher.verify(password, stored_hash)
    if user_id is None or not ok:
        raise InvalidCredentials()
    user = await session.get(User, user_id)
    if user is None:
        raise InvalidCredentials()
    if not user.is_active:
        raise AccountDisabled()
    await login_succeeded(runtime, attempt)
    if new_hash and user.hashed_password == stored_hash:
        user.hashed_password = new_hash
    return await issue_tokens(session, runtime.settings, user)


async def count_login_attempt(
    runtime: AuthRuntime, user_id: uuid.UUID | None, login_name: str, client_address: str
) -> tuple[str, str]:
    """Count a password attempt against the account and the client address before it is
    checked (atomically, so parallel guesses cannot all slip under the limit); 429
    :class:`RateLimited` when either is over ``HUDDLE_RATE_LOGIN``. Returns the keys that
    :func:`login_succeeded` takes the count back from. Shared by every password login
    (``POST /api/auth/token``, the admin panel)."""
    rate = runtime.settings.login_rate
    account_key = f"login:acct:{user_id or login_name.strip().lower()}"
    address_key = f"login:addr:{client_address}"
    wait = await runtime.limiter.hit(account_key, rate)
    if wait is None:
        wait = await runtime.limiter.hit(address_key, rate)
        if wait is not None:
            await runtime.limiter.undo(account_key)
    if wait is not None:
        raise RateLimited(wait, "Too many failed logins; try again later")
    return account_key, address_key


async def login_succeeded(runtime: AuthRuntime, attempt: tuple[str, str]) -> None:
    """A successful login clears the account's failures and takes its address count back."""
    account_key, address_key = attempt
    await runtime.limiter.reset(account_key)
    await runtime.limiter.undo(address_key)


async def issue_tokens(
    session: AsyncSession,
    settings: Settings,
    user: User,
    family_id: uuid.UUID | None = None,
    *,
    token_id: uuid.UUID | None = None,
) -> TokenPair:
    """A new access token and a refresh token in ``family_id`` (a new family by default)."""
    now = utcnow()
    secret = new_secret()
    session.add(
        RefreshToken(
            id=token_id or new_id(),
            user_id=user.id,
            family_id=family_id or uuid.uuid4(),
            token_hash=hash_secret(secret),
            expires_at=now + timedelta(seconds=settings.refresh_token_ttl),
        )
    )
    await session.flush()
    return TokenPair(
        access_token=encode_access_token(
            user.id, settings.signing_key, now, settings.access_token_ttl
        ),
        refresh_token=secret,
        expires_in=settings.access_token_ttl,
    )


async def _lock_tokens(session: AsyncSession, condition: ColumnElement[bool]) -> None:
    """Lock the matching refresh-token rows (PostgreSQL; SQLite serialises writers).

    This waits for any rotation in flight on those rows to commit, so the UPDATE that
    follows (a new statement, hence a new READ COMMITTED snapshot) also sees the
    successor token that rotation inserted.
    """
    await session.execute(select(RefreshToken.id).where(condition).with_for_update())


async def _revoke_family(session: AsyncSession, family_id: uuid.UUID) -> None:
    await _lock_tokens(session, RefreshToken.family_id == family_id)
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


async def revoke_all_refresh_tokens(session: AsyncSession, user_id: uuid.UUID) -> None:
    await _lock_tokens(session, RefreshToken.user_id == user_id)
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


async def refresh(session: AsyncSession, settings: Settings, token: str) -> TokenPair:
    """Trade a refresh token for a new pair. Each token works once.

    The old token is retired with a conditional UPDATE, so of two concurrent refreshes
    with one token exactly one wins; the loser, like any later reuse, revokes the whole
    family (every token descended from that login) and gets 401.
    """
    row = await session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == hash_secret(token))
    )
    if row is None:
        raise InvalidToken("Unknown refresh token")
    now = utcnow()
    if row.revoked_at is not None:
        await _revoke_family(session, row.family_id)
        raise RefreshTokenReused()
    if row.expires_at <= now:
        raise InvalidToken("Refresh token expired")
    user = await session.get(User, row.user_id)
    if user is None or not user.is_active:
        raise InvalidToken("Account is deactivated")
    successor_id = new_id()
    retired = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == row.id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now, replaced_by=successor_id)
        .execution_options(synchronize_session=False)
    )
    if retired.rowcount != 1:  # type: ignore[attr-defined]
        await _revoke_family(session, row.family_id)
        raise RefreshTokenReused()
    return await issue_tokens(session, settings, user, row.family_id, token_id=successor_id)


async def logout(session: AsyncSession, token: str) -> None:
    """Sign out the login a refresh token belongs to (its whole family)."""
    row = await session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == hash_secret(token))
    )
    if row is None:
        raise InvalidToken("Unknown refresh token")
    await _revoke_family(session, row.family_id)


# --- personal API tokens --------------------------------------------------------------


async def create_api_token(
    session: AsyncSession, user: User, name: str, expires_in_days: int | None
) -> tuple[ApiToken, str]:
    secret = new_secret(API_TOKEN_PREFIX)
    token = ApiToken(
        user_id=user.id,
        name=name,
        token_hash=hash_secret(secret),
        prefix=secret[:12],
        expires_at=utcnow() + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    session.add(token)
    await session.flush()
    return token, secret


async def list_api_tokens(
    session: AsyncSession, user: User, page: PageParams
) -> tuple[list[ApiToken], str | None]:
    query = select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
    return await paginate(session, query, ApiToken.id, page)


async def revoke_api_token(session: AsyncSession, user: User, token_id: uuid.UUID) -> None:
    token = await session.scalar(
        select(ApiToken).where(
            ApiToken.id == token_id, ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None)
        )
    )
    if token is None:
        raise NotFound("API token not found")
    token.revoked_at = utcnow()
    await session.flush()


async def count_users(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(User)) or 0)
