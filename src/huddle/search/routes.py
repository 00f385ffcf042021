"""Full-text search over what the caller can see."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AfterValidator

from huddle.access.deps import CurrentCaller, WorkspaceAccessDep
from huddle.core.db import SessionDep
from huddle.core.errors import ERROR_RESPONSES
from huddle.core.validation import clean_text
from huddle.search import service
from huddle.search.schemas import SearchPage

router = APIRouter(prefix="/api", tags=["search"], responses=ERROR_RESPONSES)

Q = Annotated[
    str,
    Query(
        min_length=1,
        max_length=200,
        description="Words to find, all of them; the last one also as a prefix.",
    ),
    AfterValidator(clean_text),
]
Types = Annotated[
    str | None,
    Query(
        max_length=100,
        description=f"Comma-separated subset of: {', '.join(service.KINDS)} (default: all).",
    ),
]
Limit = Annotated[int, Query(ge=1, le=50, description="Page size (max 50)")]
Cursor = Annotated[str | None, Query(max_length=100, description="From next_cursor")]


@router.get("/workspaces/{wid}/search", response_model=SearchPage)
async def search(
    access: WorkspaceAccessDep,
    caller: CurrentCaller,
    session: SessionDep,
    q: Q,
    types: Types = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> SearchPage:
    """Search the messages and tasks you can see in a workspace, best matches first."""
    params = service.SearchParams.parse(q, types, limit, cursor)
    scope = service.Scope(access.workspace.id, caller.id, access.role)
    return await service.search(session, scope, params)
