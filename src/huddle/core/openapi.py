"""OpenAPI post-processing: every operation declares the error shape."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from huddle.core.errors import ErrorBody
from huddle.core.idempotency import UNSTORED_PREFIXES

_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": (
        "Send a retry with the same key and body to get the first 2xx answer again "
        "(with `Idempotent-Replayed: true`) instead of a second write; scoped per user "
        "and route, kept 24 h. Another body with the same key is 422 "
        "`idempotency_key_reused`; while the first is running, 409 `idempotency_key_in_use`."
    ),
}

_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_ERROR_CONTENT = {"application/json": {"schema": _ERROR_REF}}


def install_openapi(app: FastAPI) -> None:
    """Replace FastAPI's ``{"detail"}`` errors with ``ErrorBody`` on every operation."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["ErrorBody"] = ErrorBody.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        for name, sub in components["ErrorBody"].pop("$defs", {}).items():
            components.setdefault(name, sub)
        for path, path_item in schema.get("paths", {}).items():
            post = path_item.get("post")
            if (
                post is not None
                and path.startswith("/api/")
                and not path.startswith(UNSTORED_PREFIXES)
            ):
                post.setdefault("parameters", []).append(_IDEMPOTENCY_KEY)
            for operation in path_item.values():
                if operation.get("description"):
                    # The route's one-line docstring is its summary.
                    operation["summary"] = operation["description"].strip().splitlines()[0]
                responses = operation.setdefault("responses", {})
                for status, response in responses.items():
                    if status.startswith(("4", "5")) or status == "default":
                        response["content"] = _ERROR_CONTENT
                responses.setdefault("default", {"description": "Error", "content": _ERROR_CONTENT})
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
