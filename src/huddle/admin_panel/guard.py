"""Cross-site request forgery guard and response headers for the admin panel.

The session cookie is ``SameSite=Strict`` already; this adds a check that does not
depend on the browser honouring it: a request that changes something (any method but
GET/HEAD/OPTIONS, and SQLAdmin's actions, which are GET links) must come from a page of
the same host. Browsers say where a request comes from in ``Sec-Fetch-Site``, ``Origin``
and ``Referer``; any of them naming another site gets 403. A request with none of them
is not from a browser page, so it is not a forgery (it still needs the session cookie).

Responses get ``Referrer-Policy: same-origin`` (the app-wide ``no-referrer`` would make
browsers send ``Origin: null`` on the panel's own form posts) and ``Cache-Control:
no-store`` (the pages show personal data).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def _host_of(url: str) -> str | None:
    try:
        return urlsplit(url).netloc.lower() or None
    except ValueError:
        return None


def cross_site(headers: Headers) -> bool:
    """True when the browser says the request comes from a page of another origin."""
    host = headers.get("host", "").lower()
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return True
    origin = headers.get("origin")
    if origin is not None:
        return origin == "null" or _host_of(origin) != host
    referer = headers.get("referer")
    if referer is not None:
        return _host_of(referer) != host
    return False


class SameOriginGuard:
    """ASGI middleware of the admin app (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        changes = scope["method"] not in _SAFE or "/action/" in scope.get("path", "")
        if changes and cross_site(headers):
            response = PlainTextResponse("Cross-site request refused", status_code=403)
            await response(scope, receive, self._with_headers(send, static=False))
            return
        static = "/statics/" in scope.get("path", "")
        await self.app(scope, receive, self._with_headers(send, static=static))

    @staticmethod
    def _with_headers(send: Send, *, static: bool) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Referrer-Policy", "same-origin")
                if not static:
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        return wrapped
