"""CORS from ``HUDDLE_CORS_ORIGINS`` only, with refusals in the error shape."""

from __future__ import annotations

import json

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response


class ErrorShapedCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, but a refused preflight answers ``{"error", "code"}`` JSON."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        message = response.body.decode() if isinstance(response.body, bytes) else "CORS refused"
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        headers["content-type"] = "application/json"
        return Response(
            json.dumps({"error": message, "code": "cors_refused"}),
            status_code=response.status_code,
            headers=headers,
        )
