"""Search over what the caller can see: full-text (by words) and semantic (by meaning)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import AfterValidator

from huddle.access.deps import CurrentCaller, RoleCache, WorkspaceAccessDep
from huddle.core.db import SessionDep
from huddle.core.errors import ERROR_RESPONSES
from huddle.core.validation import clean_text
from huddle.search import semantic, service
from huddle.search.embeddings import Embedder
from huddle.search.schemas import AISearchAnswer, AISearchRequest, SearchPage
from huddle.search.vectors import VectorIndex

router = APIRouter(prefix="/api", tags=["search"], responses=ERROR_RESPONSES)
ai_router = APIRouter(prefix="/api/ai", tags=["ai"], responses=ERROR_RESPONSES)


@dataclass(frozen=True)
class SemanticRuntime:
    """The process's query embedder and vector index (``app.state.semantic``)."""

    embedder: Embedder
    index: VectorIndex


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
    """Search the messages, tasks, documents and files you can see in a workspace, best
    matches first."""
    params = service.SearchParams.parse(q, types, limit, cursor)
    scope = service.Scope(access.workspace.id, caller.id, access.role)
    return await service.search(session, scope, params)


@ai_router.post("/search", response_model=AISearchAnswer)
async def ai_search(
    data: AISearchRequest, caller: CurrentCaller, cache: RoleCache, request: Request
) -> AISearchAnswer:
    """The passages closest in meaning to `query` among the documents, files and messages
    you can see in a workspace, best source first.

    `answer` is written from the sources when an LLM is configured, else null.
    """
    runtime: SemanticRuntime = request.app.state.semantic
    # A read transaction (not the write one every POST gets): nothing is written, and on
    # SQLite a write transaction would hold the database lock while the query is embedded.
    async with request.app.state.db.read_session() as session:
        return await semantic.search(session, cache, runtime.embedder, runtime.index, caller, data)
