"""Idempotent POSTs: a retried request with the same ``Idempotency-Key`` is answered once.

:class:`IdempotencyMiddleware` is a pure ASGI middleware that runs inside
:class:`~huddle.core.middleware.RequestContextMiddleware` (so replays and errors still get
an ``X-Request-ID`` and the last-resort 500) and outside the routes. For a ``POST`` under
``/api/`` that carries an ``Idempotency-Key`` header and a valid Bearer token:

1. the body is read in full (bounded; larger bodies pass through untouched) and hashed;
2. the key is claimed by inserting an :class:`IdempotencyKey` row with ``status_code``
   NULL in its own short transaction, scoped to (user, ``"POST <path>"``, key);
3. if the row already exists: another body is 422 ``idempotency_key_reused``; a request
   still running is 409 ``idempotency_key_in_use`` with ``Retry-After: 1``; a finished
   one is replayed (status, body, content type and ``Location``, plus
   ``Idempotent-Replayed: true``) without running the route; an expired row is deleted
   and the request proceeds as the first;
4. the route runs with the buffered body; its response is buffered too. A 2xx answer is
   stored on the row *before* it is sent (a client that saw it can always replay it);
   any other answer, or an exception, deletes the row so the client may retry with the
   same key (a failed request wrote nothing). ``text/event-stream`` responses are not
   stored: the key is released and the stream passed through.

A claim whose request never finished (the process died holding it) blocks the key for
:data:`LOCK_TIMEOUT`; after that the next request with the same body takes it over. A
request that is really still running after that window may therefore run twice.

Everything else passes through untouched, with no body buffering. Requests without a
valid token pass through too: the route answers 401 itself. Credential routes
(``/api/auth/...``) are never stored: their answers carry secrets (API tokens shown once)
that are otherwise kept only as hashes.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import anyio
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from starlette.datastructures import Headers, State
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from huddle.core.db import Database
from huddle.core.errors import error_response
from huddle.core.idempotency_models import IdempotencyKey
from huddle.core.time import utcnow

log = logging.getLogger("huddle.idempotency")

HEADER = "idempotency-key"
REPLAYED_HEADER = "Idempotent-Replayed"
#: Set by a route on an error answer given *after* it committed writes (e.g. the AI
#: assistant's turn, which stores the user's message before asking the model): the
#: answer is kept like a 2xx one, so a retry with the key replays it instead of doing
#: the writes again. The header itself is not sent to the client.
KEEP_ERROR_HEADER = "x-huddle-keep-error"
#: A claim older than this whose request never finished is taken over.
LOCK_TIMEOUT = timedelta(seconds=60)
#: Largest body buffered for hashing (the app's own limit applies when lower). Larger
#: bodies pass through without idempotency. Matches DESIGN's MAX_BODY_KB default.
MAX_BUFFERED_BODY = 1024 * 1024
#: Seconds between two opportunistic prunes of expired keys, per process.
PRUNE_EVERY = 600.0
#: Paths whose answers are never stored (they hold credentials shown only once).
UNSTORED_PREFIXES = ("/api/auth/",)
_MAX_KEY_LENGTH = 255
_CLAIM_ATTEMPTS = 3

#: ``identify(app_state, bearer_token)`` → the active user's id, or None for an invalid
#: token or a deactivated user. Injected by the app: ``core`` does not import ``auth``.
Identify = Callable[[State, str], Awaitable[uuid.UUID | None]]


def valid_key(raw: str) -> bool:
    """1 to 255 printable ASCII characters, not only spaces."""
    return (
        0 < len(raw) <= _MAX_KEY_LENGTH
        and all(" " <= char <= "~" for char in raw)
        and bool(raw.strip())
    )


def bearer_token(headers: Headers) -> str | None:
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    credentials = credentials.strip()
    return credentials if scheme.lower() == "bearer" and credentials else None


# --- the request body ---------------------------------------------------------------------


@dataclass
class _Body:
    """What was read of a request body; ``data`` is None when it was not read in full."""

    messages: list[Message] = field(default_factory=list)
    data: bytes | None = None
    error: Exception | None = None

    def replay(self, receive: Receive) -> Receive:
        """A ``receive`` that hands the app what was read, then carries on with ``receive``."""
        pending = (
            [{"type": "http.request", "body": self.data, "more_body": False}]
            if self.data is not None
            else list(self.messages)
        )
        error = self.error

        async def replayed() -> Message:
            nonlocal error
            if pending:
                return pending.pop(0)
            if error is not None:
                # An outer body limit refused the body: the app meets the refusal where it
                # reads, so it answers 413 in the error shape as it would without us.
                raised, error = error, None
                raise raised
            return await receive()

        return replayed


async def _read_body(receive: Receive, limit: int) -> _Body:
    body = _Body()
    size = 0
    while True:
        try:
            message = await receive()
        except Exception as exc:  # re-raised to the app by _Body.replay
            body.error = exc
            return body
        body.messages.append(message)
        if message["type"] != "http.request":  # the client went away
            return body
        size += len(message.get("body", b""))
        if size > limit:
            return body
        if not message.get("more_body", False):
            body.data = b"".join(m.get("body", b"") for m in body.messages)
            return body


def _body_limit(scope: Scope, headers: Headers) -> int | None:
    """How much may be buffered, or None when the declared length is already too much."""
    limit = MAX_BUFFERED_BODY
    app_limit = scope.get(MAX_BODY_SIZE_SCOPE_KEY)
    if isinstance(app_limit, int):
        limit = min(limit, app_limit)
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    return limit


# --- claiming a key -----------------------------------------------------------------------


@dataclass(frozen=True)
class KeyScope:
    user_id: uuid.UUID
    route: str
    key: str

    def where(self) -> Any:
        return (
            (IdempotencyKey.user_id == self.user_id)
            & (IdempotencyKey.route == self.route)
            & (IdempotencyKey.key == self.key)
        )


@dataclass(frozen=True)
class Claimed:
    row_id: uuid.UUID


@dataclass(frozen=True)
class Replay:
    status_code: int
    content_type: str | None
    location: str | None
    body: bytes


@dataclass(frozen=True)
class Refused:
    status_code: int
    message: str
    code: str
    headers: dict[str, str] = field(default_factory=dict)


Claim = Claimed | Replay | Refused


async def claim(db: Database, scope: KeyScope, digest: str, ttl: int) -> Claim:
    """Take the key for this request, or say why not (in use, reused) or what to replay.

    The unique constraint decides races: the loser of a concurrent insert reads the
    winner's row in a fresh session (the failed transaction is gone).
    """
    for _ in range(_CLAIM_ATTEMPTS):
        now = utcnow()
        try:
            async with db.write_session() as session:
                row = IdempotencyKey(
                    user_id=scope.user_id,
                    route=scope.route,
                    key=scope.key,
                    request_hash=digest,
                    created_at=now,
                    expires_at=now + timedelta(seconds=ttl),
                )
                session.add(row)
                await session.commit()
            return Claimed(row.id)
        except IntegrityError:
            pass
        outcome = await _existing(db, scope, digest, ttl)
        if outcome is not None:
            return outcome
    return _in_use()


async def _existing(db: Database, scope: KeyScope, digest: str, ttl: int) -> Claim | None:
    """The answer for a key someone holds; None to try the insert again."""
    now = utcnow()
    async with db.write_session() as session:
        row = await session.scalar(select(IdempotencyKey).where(scope.where()))
        if row is None:  # released or pruned since our insert failed
            return None
        if row.expires_at <= now:
            await session.execute(
                delete(IdempotencyKey).where(
                    IdempotencyKey.id == row.id, IdempotencyKey.expires_at <= now
                )
            )
            await session.commit()
            return None
        if row.request_hash != digest:
            return Refused(
                422,
                "This Idempotency-Key was already used with a different request body",
                "idempotency_key_reused",
            )
        if row.status_code is not None:
            return Replay(row.status_code, row.content_type, row.location, row.response_body or b"")
        if now - row.created_at < LOCK_TIMEOUT:
            return _in_use()
        # Abandoned: its request died without releasing it. Take it over, unless another
        # request just did (the condition on created_at makes that a lost race).
        taken = await session.execute(
            update(IdempotencyKey)
            .where(
                IdempotencyKey.id == row.id,
                IdempotencyKey.status_code.is_(None),
                IdempotencyKey.created_at == row.created_at,
            )
            .values(created_at=now, expires_at=now + timedelta(seconds=ttl), request_hash=digest)
        )
        await session.commit()
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            return _in_use()
        log.warning("taking over abandoned idempotency key of %s on %s", row.user_id, row.route)
        return Claimed(row.id)


_INVALID_KEY = Refused(
    422, "Idempotency-Key must be 1 to 255 printable ASCII characters", "invalid_idempotency_key"
)


def _in_use() -> Refused:
    return Refused(
        409,
        "A request with this Idempotency-Key is still being processed",
        "idempotency_key_in_use",
        {"Retry-After": "1"},
    )


async def store_response(
    db: Database, row_id: uuid.UUID, status_code: int, headers: Headers, body: bytes
) -> None:
    """Keep a finished request's answer on its claimed row, for replays."""
    async with db.write_session() as session:
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.id == row_id)
            .values(
                status_code=status_code,
                content_type=_fitting(headers.get("content-type"), 200),
                location=_fitting(headers.get("location"), 2000),
                response_body=body,
            )
        )
        await session.commit()


def _fitting(value: str | None, length: int) -> str | None:
    return value if value is not None and len(value) <= length else None


async def release(db: Database, row_id: uuid.UUID) -> None:
    """Give the key back (the request failed, or its answer is a stream)."""
    async with db.write_session() as session:
        await session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == row_id))
        await session.commit()


async def prune_expired(db: Database, now: datetime | None = None) -> int:
    """Delete the keys past their ``expires_at``; return how many went."""
    async with db.write_session() as session:
        result = await session.execute(
            delete(IdempotencyKey).where(IdempotencyKey.expires_at <= (now or utcnow()))
        )
        await session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]


# --- the middleware -----------------------------------------------------------------------


class IdempotencyMiddleware:
    """Answers a repeated ``POST /api/...`` with the same ``Idempotency-Key`` once.

    See the module docstring for the protocol. ``identify`` resolves a Bearer token to a
    user id the way routes do; keys are scoped per user and route.
    """

    def __init__(self, app: ASGIApp, identify: Identify) -> None:
        self.app = app
        self.identify = identify
        self._next_prune = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _covered(scope):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        keys = headers.getlist(HEADER)
        token = bearer_token(headers) if keys else None
        state: State = scope["app"].state
        # Without a valid token the request is not ours: the route answers 401 itself.
        user_id = await self.identify(state, token) if token is not None else None
        if user_id is None:
            await self.app(scope, receive, send)
            return
        if len(keys) != 1 or not valid_key(keys[0]):
            await _refuse(scope, receive, send, _INVALID_KEY)
            return
        limit = _body_limit(scope, headers)
        body = _Body() if limit is None else await _read_body(receive, limit)
        if body.data is None:  # too large or cut short: the app deals with it as usual
            await self.app(scope, body.replay(receive), send)
            return
        self._maybe_prune(state)
        key_scope = KeyScope(user_id, f"POST {scope['path']}", keys[0])
        digest = hashlib.sha256(body.data).hexdigest()
        outcome = await claim(state.db, key_scope, digest, state.settings.idempotency_ttl)
        if isinstance(outcome, Refused):
            await _refuse(scope, receive, send, outcome)
        elif isinstance(outcome, Replay):
            await _send_replay(send, outcome)
        else:
            await self._run(scope, body.replay(receive), send, state.db, outcome.row_id)

    async def _run(
        self, scope: Scope, receive: Receive, send: Send, db: Database, row_id: uuid.UUID
    ) -> None:
        """Run the app holding the claim; keep a 2xx answer, release the key otherwise."""
        buffer = _ResponseBuffer(send, db, row_id)
        try:
            await self.app(scope, receive, buffer.send)
        finally:
            if not buffer.settled:  # the app raised (or never answered): nothing was written
                with anyio.CancelScope(shield=True):
                    await _quietly(release(db, row_id), "release")

    def _maybe_prune(self, state: State) -> None:
        """Prune expired keys now and then, in the background (at most every 10 min)."""
        now = time.monotonic()
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_EVERY
            state.background.spawn(prune_expired(state.db), name="idempotency-prune")


class _ResponseBuffer:
    """Holds the app's answer until it is complete, then stores it (2xx) or releases the
    key, and only then sends it on. Streams (``text/event-stream``) and anything unusual
    release the key and pass straight through."""

    def __init__(self, send: Send, db: Database, row_id: uuid.UUID) -> None:
        self._send = send
        self._db = db
        self._row_id = row_id
        self._start: Message | None = None
        self._chunks: list[bytes] = []
        self.settled = False

    async def send(self, message: Message) -> None:
        if self.settled:
            await self._send(message)
        elif message["type"] == "http.response.start":
            self._start = message
            if _is_event_stream(message):
                await self._pass_through()
        elif message["type"] == "http.response.body" and self._start is not None:
            self._chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                await self._finish(self._start, b"".join(self._chunks))
        else:  # e.g. an ASGI extension such as pathsend: not something we can store
            await self._pass_through()
            await self._send(message)

    async def _finish(self, start: Message, body: bytes) -> None:
        self.settled = True
        status = int(start["status"])
        marker = KEEP_ERROR_HEADER.encode()
        keep = any(name.lower() == marker for name, _ in start["headers"])
        if keep:
            start = {**start, "headers": [h for h in start["headers"] if h[0].lower() != marker]}
        if 200 <= status < 300 or keep:
            headers = Headers(raw=start["headers"])
            await _quietly(store_response(self._db, self._row_id, status, headers, body), "store")
        else:
            await _quietly(release(self._db, self._row_id), "release")
        await self._send(start)
        await self._send({"type": "http.response.body", "body": body})

    async def _pass_through(self) -> None:
        self.settled = True
        await _quietly(release(self._db, self._row_id), "release")
        if self._start is not None:
            await self._send(self._start)
        if self._chunks:
            await self._send(
                {"type": "http.response.body", "body": b"".join(self._chunks), "more_body": True}
            )


def _covered(scope: Scope) -> bool:
    """A POST under /api/ whose answer may be stored."""
    path: str = scope.get("path", "")
    return (
        scope["type"] == "http"
        and scope["method"] == "POST"
        and path.startswith("/api/")
        and not path.startswith(UNSTORED_PREFIXES)
    )


async def _refuse(scope: Scope, receive: Receive, send: Send, refused: Refused) -> None:
    response = error_response(
        refused.status_code, refused.message, refused.code, headers=refused.headers
    )
    await response(scope, receive, send)


def _is_event_stream(start: Message) -> bool:
    content_type = Headers(raw=start["headers"]).get("content-type", "")
    return content_type.split(";")[0].strip().lower() == "text/event-stream"


async def _quietly(work: Awaitable[None], what: str) -> None:
    """Book-keeping must not turn an answered request into a 500: log and carry on.

    A failed store or release leaves the key claimed; it blocks retries with 409 until
    :data:`LOCK_TIMEOUT`, then the next retry takes it over.
    """
    try:
        await work
    except Exception:
        log.exception("idempotency key %s failed", what)


async def _send_replay(send: Send, replay: Replay) -> None:
    headers = [
        (b"content-length", str(len(replay.body)).encode()),
        (REPLAYED_HEADER.lower().encode(), b"true"),
    ]
    if replay.content_type:
        headers.append((b"content-type", replay.content_type.encode("latin-1")))
    if replay.location:
        headers.append((b"location", replay.location.encode("latin-1")))
    await send({"type": "http.response.start", "status": replay.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": replay.body})
