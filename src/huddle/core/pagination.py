"""Cursor pagination: ``?limit=&cursor=`` → ``{"items": [...], "next_cursor"}``.

Primary keys are UUIDv7, so "newest first" is simply ``id DESC`` and the cursor is the
last id of a page (opaque to clients: base64url).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from huddle.core.errors import ValidationFailed

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


class PageParams(BaseModel):
    limit: int
    cursor: str | None


def page_params(
    limit: Annotated[int, Query(ge=1, le=200, description="Page size (max 200)")] = 50,
    cursor: Annotated[str | None, Query(max_length=200, description="From next_cursor")] = None,
) -> PageParams:
    return PageParams(limit=limit, cursor=cursor)


PageParamsDep = Annotated[PageParams, Depends(page_params)]


def encode_cursor(value: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(value.bytes).decode().rstrip("=")


def decode_cursor(cursor: str) -> uuid.UUID:
    try:
        return uuid.UUID(bytes=base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error) as exc:
        raise ValidationFailed(
            "Invalid cursor", details=[{"loc": ["query", "cursor"], "msg": "invalid cursor"}]
        ) from exc


async def paginate_desc(
    session: AsyncSession,
    query: Select[Any],
    id_column: InstrumentedAttribute[uuid.UUID],
    params: PageParams,
) -> tuple[list[Any], str | None]:
    """Run ``query`` newest first (by UUIDv7 id) and return one page and the next cursor."""
    if params.cursor:
        query = query.where(id_column < decode_cursor(params.cursor))
    rows = list(
        (await session.scalars(query.order_by(id_column.desc()).limit(params.limit + 1))).all()
    )
    if len(rows) > params.limit:
        rows = rows[: params.limit]
        return rows, encode_cursor(getattr(rows[-1], id_column.key))
    return rows, None
