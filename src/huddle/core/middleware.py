"""ASGI middleware: request id, and the last-resort 500 in the error shape."""

from __future__ import annotations

import json
import logging

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from huddle.core.requestid import accept_or_new, reset_request_id, set_request_id

log = logging.getLogger("huddle.errors")


class RequestContextMiddleware:
    """Gives each HTTP request an id and turns any unhandled exception into a clean 500.

    The 500 body is ``{"error", "code": "internal_error", "details": {"request_id"}}``;
    the traceback goes to the log under the same id, never to the client.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = accept_or_new(Headers(scope=scope).get("x-request-id"))
        token = set_request_id(request_id)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        try:
            # WebSocket frames pass straight through: the id only goes on HTTP responses,
            # and a wrapper here would cost every frame of every fan-out a call.
            await self.app(scope, receive, send_with_id if scope["type"] == "http" else send)
        except Exception:
            log.exception(
                "unhandled error in request %s %s %s",
                request_id,
                scope.get("method", "WS"),
                scope.get("path"),
            )
            if scope["type"] != "http" or started:
                raise
            body = json.dumps(
                {
                    "error": "Internal server error",
                    "code": "internal_error",
                    "details": {"request_id": request_id},
                }
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"x-request-id", request_id.encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
        finally:
            reset_request_id(token)
