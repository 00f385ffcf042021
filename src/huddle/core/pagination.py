"""Cursor pagination: ``?limit=&cursor=`` → ``{"items": [...], "next_cursor"}``.

Primary keys are UUIDv7, so "newest first" is simply ``id DESC`` and the cursor is the
last id of a page (opaque to clients: base64url).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable
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


async def paginate(
    session: AsyncSession,
    query: Select[*tuple[Any, ...]],
    id_column: InstrumentedAttribute[uuid.UUID],
    params: PageParams,
    *,
    newest_first: bool = True,
    cursor_of: Callable[[Any], uuid.UUID] | None = None,
) -> tuple[list[Any], str | None]:
    """One page of ``query`` ordered by its UUIDv7 ``id_column``, and the next cursor.

    ``query`` may select one entity (items are entities) or several (items are rows;
    pass ``cursor_of`` to read the ordering id from a row).
    """
    if params.cursor:
        after = decode_cursor(params.cursor)
        query = query.where(id_column < after if newest_first else id_column > after)
    order = id_column.desc() if newest_first else id_column.asc()
    result = await session.execute(query.order_by(order).limit(params.limit + 1))
    single = len(result.keys()) == 1
    rows = list(result.all())
    items = [row[0] for row in rows] if single else rows
    if len(items) > params.limit:
        items = items[: params.limit]
        last = items[-1]
        last_id = cursor_of(last) if cursor_of else getattr(last, id_column.key)
        return items, encode_cursor(last_id)
    return items, None
