"""Request ids: one per request, echoed as ``X-Request-ID`` and attached to log lines."""

from __future__ import annotations

import contextvars
import re
import uuid

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "huddle_request_id", default=None
)
_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def current_request_id() -> str | None:
    return _request_id.get()


def accept_or_new(incoming: str | None) -> str:
    """Keep a well-formed id sent by a proxy; otherwise make one."""
    if incoming and _VALID.match(incoming):
        return incoming
    return uuid.uuid4().hex


def set_request_id(value: str) -> contextvars.Token[str | None]:
    return _request_id.set(value)


def reset_request_id(token: contextvars.Token[str | None]) -> None:
    _request_id.reset(token)


_user_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "huddle_user_id", default=None
)


def current_user_id() -> str | None:
    """The authenticated user of the current request (for log lines), if any."""
    return _user_id.get()


def set_user_id(value: object) -> None:
    """Called once the request's user is known; each request runs in its own context."""
    _user_id.set(str(value) if value is not None else None)
