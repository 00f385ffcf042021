"""One error contract: every non-2xx response is ``{"error", "code", "details?"}``.

Services raise :class:`AppError` subclasses (never ``HTTPException``); the handlers in
:func:`install_error_handlers` render them, FastAPI's validation errors, Starlette's
404/405 and unhandled exceptions in that single shape.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import StatementError
from starlette.exceptions import HTTPException as StarletteHTTPException

from huddle.core.requestid import current_request_id

log = logging.getLogger("huddle.errors")


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: str = Field(description="A human-readable message.")
    code: str = Field(description="A stable machine-readable code, e.g. `not_found`.")
    details: Any | None = Field(
        default=None,
        description="Optional structured details; for 422 a list of `{loc, msg}`.",
    )


class AppError(Exception):
    """Base of every error a service may raise on purpose."""

    status_code = 500
    code = "internal_error"
    message = "Internal server error"
    #: When true, the request's transaction is committed although the request fails
    #: (e.g. revoking a refresh-token family on reuse must stick).
    keep_changes = False

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        details: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.message = message or self.message
        self.code = code or self.code
        self.details = details
        self.headers = dict(headers or {})
        super().__init__(self.message)


class BadRequest(AppError):
    status_code, code, message = 400, "bad_request", "Bad request"


class ValidationFailed(AppError):
    status_code, code, message = 422, "validation_error", "Invalid input"


class NotAuthenticated(AppError):
    status_code, code, message = 401, "not_authenticated", "Not authenticated"

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kwargs)


class InvalidToken(NotAuthenticated):
    code, message = "invalid_token", "Invalid or expired token"


class Forbidden(AppError):
    status_code, code, message = 403, "forbidden", "You are not allowed to do this"


class NotFound(AppError):
    status_code, code, message = 404, "not_found", "Not found"


class Conflict(AppError):
    status_code, code, message = 409, "conflict", "Conflict"


class Gone(AppError):
    status_code, code, message = 410, "gone", "Gone"


class PreconditionFailed(AppError):
    status_code, code, message = 412, "precondition_failed", "Precondition failed"


class PayloadTooLarge(AppError):
    status_code, code, message = 413, "payload_too_large", "Request body too large"


class UnsupportedMediaType(AppError):
    status_code, code, message = 415, "unsupported_media_type", "Unsupported media type"


class RateLimited(AppError):
    status_code, code, message = 429, "rate_limited", "Too many requests"

    def __init__(self, retry_after: int, message: str | None = None) -> None:
        retry_after = max(1, int(retry_after))
        super().__init__(
            message or f"Too many requests; retry in {retry_after} s",
            details={"retry_after": retry_after},
            headers={"Retry-After": str(retry_after)},
        )


class ServiceUnavailable(AppError):
    status_code, code, message = 503, "service_unavailable", "Service unavailable"


# Codes for the HTTP errors Starlette raises itself (unknown route, wrong method, ...).
_HTTP_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "service_unavailable",
}


def error_body(message: str, code: str, details: Any = None) -> dict[str, Any]:
    """The error shape ``{error, code, details}`` (HTTP bodies and WebSocket acks)."""
    body: dict[str, Any] = {"error": message, "code": code}
    if details is not None:
        body["details"] = details
    return body


def error_response(
    status: int,
    message: str,
    code: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(message, code, details), status_code=status, headers=dict(headers or {})
    )


def validation_details(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Pydantic errors as ``[{loc, msg}]``."""
    details = []
    for err in errors:
        loc = [part if isinstance(part, int) else str(part) for part in err.get("loc", ())]
        details.append({"loc": loc, "msg": str(err.get("msg", "invalid"))})
    return details


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    if exc.status_code >= 500:
        log.error("request %s failed: %s", current_request_id(), exc.message)
    return error_response(exc.status_code, exc.message, exc.code, exc.details, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(
        422, "Invalid input", "validation_error", validation_details(exc.errors())
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else "HTTP error"
    if exc.status_code == 400:
        # FastAPI's "error parsing the body" (multipart without boundary, oversized form
        # field, ...): malformed input, which the contract answers with 422.
        return error_response(422, message, "validation_error", [{"loc": ["body"], "msg": message}])
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, message, code, headers=exc.headers)


def _bad_value(exc: BaseException) -> bool:
    """Whether a database error was caused by a value the client sent.

    SQLSTATE class 22 ("data exception": text with NUL, numbers out of range, ...) and
    text no driver can encode are bad input, not server faults.
    """
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(sqlstate, str) and sqlstate.startswith("22"):
        return True
    return isinstance(orig, UnicodeEncodeError)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    if not _bad_value(exc):
        raise exc
    log.info("request %s: database refused a value: %s", current_request_id(), exc)
    return error_response(
        422,
        "A value cannot be stored",
        "validation_error",
        [{"loc": ["body"], "msg": "contains characters or values that cannot be stored"}],
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(StatementError, _database_error)
    # Unhandled exceptions are answered by RequestContextMiddleware (core/middleware.py).


# The error responses every operation declares in OpenAPI.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        401: "Not authenticated (`not_authenticated`, `invalid_token`)",
        403: "Forbidden (`forbidden`)",
        404: "Not found (`not_found`)",
        422: "Invalid input (`validation_error`)",
        429: "Rate limited (`rate_limited`), with `Retry-After`",
        500: "Internal error (`internal_error`)",
    }.items()
}
