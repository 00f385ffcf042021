"""Search over what the caller can see: full-text (by words) and semantic (by meaning)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import AfterValidator

from huddle.access.deps import Caller, CurrentCaller, RoleCache, WorkspaceAccessDep
from huddle.ai import summaries
from huddle.ai.llm import ProviderError
from huddle.ai.service import AIRuntime
from huddle.auth.deps import UserOutsideTransaction
from huddle.core.db import SessionDep
from huddle.core.errors import ERROR_RESPONSES
from huddle.core.validation import clean_text
from huddle.search import semantic, service
from huddle.search.embeddings import Embedder
from huddle.search.schemas import AISearchAnswer, AISearchRequest, SearchPage
from huddle.search.vectors import VectorIndex

log = logging.getLogger("huddle.search")
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
    data: AISearchRequest, user: UserOutsideTransaction, cache: RoleCache, request: Request
) -> AISearchAnswer:
    """The passages closest in meaning to `query` among the documents, files and messages
    you can see in a workspace, best source first.

    `answer` is written from the sources when an LLM is configured (citing them as
    [1], [2], … in the order of `sources`), else null — also when the model fails.
    """
    runtime: SemanticRuntime = request.app.state.semantic
    caller = Caller.acting_as(user)
    # A read transaction (not the write one every POST gets): on SQLite a write
    # transaction would hold the database lock while the query is embedded and the answer
    # written (whose usage row is written in a transaction of its own).
    async with request.app.state.db.read_session() as session:
        found = await semantic.search(session, cache, runtime.embedder, runtime.index, caller, data)
    ai: AIRuntime = request.app.state.ai
    if ai.llm.client is None or not found.sources:
        return found
    await ai.check_rate(caller.id)
    try:
        found.answer = await summaries.answer(
            ai.llm, data.query, found.sources, caller.id, ai.settings.ai_context_tokens
        )
    except ProviderError as exc:
        # The sources stand on their own: they are returned, with no answer.
        log.warning("no answer for an AI search: %s", exc.message)
    return found
