"""413 ``payload_too_large`` for request bodies over the limit, declared or streamed.

Every request may carry ``HUDDLE_MAX_BODY_KB``; routes that take uploads get their own,
larger limit (``limit_for``). A ``Content-Length`` over the limit is refused before the
app runs; a body sent without one (chunked) is counted as it arrives and refused as soon
as it passes the limit: the app meets the refusal where it reads the body, as a
Starlette ``HTTPException`` (which FastAPI re-raises from its body parsing), so the
answer is the usual error shape and nothing past the limit is buffered.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from huddle.core.errors import error_response

#: ``limit_for(scope)``: a route's own limit in bytes, or None for the default.
LimitFor = Callable[[Scope], int | None]


def _message(limit: int) -> str:
    if limit >= 1024 * 1024 and limit % (1024 * 1024) == 0:
        return f"The request body is larger than {limit // (1024 * 1024)} MB"
    return f"The request body is larger than {max(1, limit // 1024)} KB"


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=_message(limit))
        self.limit = limit


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limit: int, limit_for: LimitFor | None = None) -> None:
        self.app = app
        self.limit = limit
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit
        if self.limit_for is not None:
            limit = self.limit_for(scope) or limit
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send, limit)
            return

        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            # Raised where nothing turned it into an answer (outside FastAPI's body parsing).
            if started:
                raise
            await self._refuse(scope, receive, send, limit)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = error_response(413, _message(limit), "payload_too_large", {"limit": limit})
        # The client may still be sending: close the connection rather than read it all.
        response.headers["Connection"] = "close"
        await response(scope, receive, send)
