"""ASGI middleware: request id, metrics and the access log, and the last-resort 500 in
the error shape."""

from __future__ import annotations

import json
import logging
import time

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from huddle.core.observability import (
    HTTP_DB_TIME,
    HTTP_LATENCY,
    HTTP_REQUESTS,
    end_request_timing,
    report_error,
    request_timing,
)
from huddle.core.requestid import accept_or_new, reset_request_id, set_request_id

log = logging.getLogger("huddle.errors")

#: On every HTTP response (a route may set its own instead): no MIME sniffing, no
#: framing by other sites, no referrer leaking ids in URLs. Strict-Transport-Security is
#: added when the request came over HTTPS (directly, or from a trusted proxy that says so).
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy", "frame-ancestors 'none'"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
)
HSTS = "max-age=31536000; includeSubDomains"
access_log = logging.getLogger("huddle.access")


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/api/tasks/{tid}``), never the raw path: raw
    paths would make a metric series per id. Unmatched requests share one label."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"


class RequestContextMiddleware:
    """Gives each HTTP request an id, counts it in the metrics, writes its access-log
    line, and turns any unhandled exception into a clean 500.

    The 500 body is ``{"error", "code": "internal_error", "details": {"request_id"}}``;
    the traceback goes to the log (and to error reports, when configured) under the same
    id, never to the client. The access line (``huddle.access``, INFO) carries the
    method, route, status, latency, database time and statements, and the user id.
    """

    def __init__(self, app: ASGIApp, *, access_log: bool = True) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = accept_or_new(Headers(scope=scope).get("x-request-id"))
        token = set_request_id(request_id)
        if scope["type"] == "websocket":
            # Frames pass straight through: a wrapper here would cost every frame of
            # every fan-out a call. (Connections are counted by the gateway.)
            try:
                await self.app(scope, receive, send)
            except Exception:
                log.exception("unhandled error in WebSocket %s %s", request_id, scope.get("path"))
                raise
            finally:
                reset_request_id(token)
            return
        began = time.perf_counter()
        timing, timing_token = request_timing()
        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
                for name, value in SECURITY_HEADERS:
                    headers.setdefault(name, value)
                if scope.get("scheme") == "https":
                    headers.setdefault("Strict-Transport-Security", HSTS)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            log.exception(
                "unhandled error in request %s %s %s",
                request_id,
                scope.get("method"),
                scope.get("path"),
            )
            report_error(exc, request_id)
            if started:
                raise
            status = 500
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
                        *((k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
        finally:
            end_request_timing(timing_token)
            elapsed = time.perf_counter() - began
            route = route_template(scope)
            method = scope.get("method", "")
            HTTP_REQUESTS.labels(route=route, method=method, status=str(status)).inc()
            HTTP_LATENCY.labels(route=route, method=method).observe(elapsed)
            HTTP_DB_TIME.labels(route=route, method=method).observe(timing.db_seconds)
            if self.access_log and access_log.isEnabledFor(logging.INFO):
                user_id = (scope.get("state") or {}).get("user_id")
                access_log.info(
                    "%s %s %d %.1f ms",
                    method,
                    scope.get("path"),
                    status,
                    elapsed * 1000,
                    extra={
                        "method": method,
                        "path": scope.get("path"),
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                        "db_ms": round(timing.db_seconds * 1000, 2),
                        "db_statements": timing.statements,
                        "user_id": str(user_id) if user_id else None,
                    },
                )
            reset_request_id(token)
