"""/api/admin: site administration for superusers (403 for everyone else signed in)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from pydantic import AfterValidator

from huddle.access.deps import CurrentCaller
from huddle.admin import service
from huddle.admin.schemas import AdminUserUpdate
from huddle.auth.schemas import UserRead
from huddle.core.db import SessionDep
from huddle.core.errors import ERROR_RESPONSES
from huddle.core.pagination import Page, PageParamsDep
from huddle.core.validation import clean_text

router = APIRouter(prefix="/api/admin", tags=["admin"], responses=ERROR_RESPONSES)


@router.get("/users", response_model=Page[UserRead])
async def list_users(
    caller: CurrentCaller,
    session: SessionDep,
    page: PageParamsDep,
    q: Annotated[
        str | None,
        Query(max_length=100, description="Search email, username, name"),
        AfterValidator(clean_text),
    ] = None,
) -> object:
    """All users, newest first, optionally filtered by a search string."""
    items, cursor = await service.search_users(session, caller, q, page)
    return {"items": items, "next_cursor": cursor}


@router.patch("/users/{uid}", response_model=UserRead)
async def update_user(
    uid: uuid.UUID, data: AdminUserUpdate, caller: CurrentCaller, session: SessionDep
) -> object:
    """Activate, deactivate (signing the user out everywhere), promote or demote a user."""
    return await service.update_user(session, caller, uid, data)


@router.delete("/users/{uid}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_user(uid: uuid.UUID, caller: CurrentCaller, session: SessionDep) -> Response:
    """Delete a user account."""
    await service.delete_user(session, caller, uid)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
