"""The assistant over HTTP: health, conversations (with SSE replies), pending actions,
prompt templates.

Routes that run the model do not take the request's database session: on SQLite a POST's
session holds the write lock until the endpoint returns, and the agent's tools write in
transactions of their own while the model is still thinking. They authenticate in a
short read session instead (``UserOutsideTransaction``) and open their own units of work.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from huddle.access.deps import RoleCache
from huddle.ai import prompts, service, summaries
from huddle.ai.schemas import (
    ActionResult,
    AIHealth,
    ConversationCreate,
    ConversationDetail,
    ConversationRead,
    MessageCreate,
    PromptCreate,
    PromptRead,
    PromptUpdate,
    Reply,
    SummarizeRequest,
    Summary,
)
from huddle.ai.service import AIRuntime
from huddle.auth.deps import CurrentUser, UserOutsideTransaction
from huddle.core.db import SessionDep
from huddle.core.errors import ERROR_RESPONSES, AppError
from huddle.core.pagination import Page, PageParamsDep

router = APIRouter(prefix="/api/ai", tags=["ai"], responses=ERROR_RESPONSES)
prompt_router = APIRouter(prefix="/api/prompts", tags=["ai"], responses=ERROR_RESPONSES)


def _runtime(request: Request) -> AIRuntime:
    runtime: AIRuntime = request.app.state.ai
    return runtime


Runtime = Annotated[AIRuntime, Depends(_runtime)]


ModelUser = UserOutsideTransaction


@router.get("/health", response_model=AIHealth)
async def health(user: CurrentUser, runtime: Runtime) -> Any:
    """Which model the assistant uses, and whether its server answers."""
    return await runtime.llm.health()


@router.post("/conversations", status_code=status.HTTP_201_CREATED, response_model=ConversationRead)
async def create_conversation(
    data: ConversationCreate, user: CurrentUser, session: SessionDep, cache: RoleCache
) -> Any:
    """Start a conversation in a workspace (default: your only one)."""
    return await service.create_conversation(session, cache, user.id, data)


@router.get("/conversations", response_model=Page[ConversationRead])
async def list_conversations(user: CurrentUser, session: SessionDep, page: PageParamsDep) -> Any:
    """Your conversations, newest first."""
    items, cursor = await service.list_conversations(session, user.id, page)
    return {"items": items, "next_cursor": cursor}


@router.get("/conversations/{cid}", response_model=ConversationDetail)
async def get_conversation(cid: uuid.UUID, user: CurrentUser, session: SessionDep) -> Any:
    """A conversation with all its messages and the actions waiting for you."""
    conversation = await service.own_conversation(session, user.id, cid)
    return await service.conversation_detail(session, conversation)


@router.delete("/conversations/{cid}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_conversation(cid: uuid.UUID, user: CurrentUser, session: SessionDep) -> Response:
    await service.delete_conversation(session, user.id, cid)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n".encode()


@router.post(
    "/conversations/{cid}/messages",
    response_model=Reply,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def post_message(
    cid: uuid.UUID, data: MessageCreate, user: ModelUser, runtime: Runtime, request: Request
) -> Any:
    """Ask the assistant. It may call tools (as you, with your rights); a destructive
    action waits in `pending_actions` for `POST /api/ai/actions/{id}/confirm`.

    With `Accept: text/event-stream` the answer streams as server-sent events: `delta`
    (text), `tool_call.start`, `tool_call.end`, `message` (the reply, as the JSON body
    would be), `done`; or `error` (the error shape) if the model fails.
    """
    state = request.app.state
    turn = await service.begin_turn(state, runtime, user.id, cid, data.content)
    if "text/event-stream" not in request.headers.get("accept", ""):
        return await service.run_turn(state, runtime, turn)

    queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def sink(event: str, payload: dict[str, Any]) -> None:
        queue.put_nowait(_sse(event, payload))

    async def produce() -> None:
        # A task of the app, not of the response: a client that goes away does not
        # stop the turn, whose messages are stored all the same.
        try:
            reply = await service.run_turn(state, runtime, turn, stream=sink)
            queue.put_nowait(_sse("message", reply.model_dump(mode="json")))
            queue.put_nowait(_sse("done", {}))
        except AppError as exc:
            queue.put_nowait(_sse("error", {"error": exc.message, "code": exc.code}))
        except Exception:
            queue.put_nowait(_sse("error", {"error": "Internal error", "code": "internal_error"}))
            raise
        finally:
            queue.put_nowait(None)

    state.background.spawn(produce(), name=f"ai-turn-{cid}")

    async def events() -> AsyncIterator[bytes]:
        while (chunk := await queue.get()) is not None:
            yield chunk

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post("/actions/{aid}/confirm", response_model=ActionResult)
async def confirm_action(aid: uuid.UUID, user: ModelUser, request: Request) -> Any:
    """Carry out an action the assistant proposed (e.g. deleting a task), as the agent
    acting for you. 410 once it expired; another user's action is 404."""
    return await service.confirm_action(request.app.state, user.id, aid)


@router.post("/summarize", response_model=Summary)
async def summarize(
    data: SummarizeRequest, user: ModelUser, runtime: Runtime, cache: RoleCache, request: Request
) -> Any:
    """A summary of a channel you can read (threads included), optionally only of what
    was said after `since`. Long channels are summarised in parts, then merged."""
    return await summaries.summarize_channel(
        request.app.state.db,
        cache,
        runtime.llm,
        user.id,
        data.channel_id,
        data.since,
        budget_tokens=runtime.settings.ai_context_tokens,
        before_generating=lambda: runtime.check_rate(user.id),
    )


# --- prompts -------------------------------------------------------------------------------


@prompt_router.post("", status_code=status.HTTP_201_CREATED, response_model=PromptRead)
async def create_prompt(
    data: PromptCreate, user: CurrentUser, session: SessionDep, cache: RoleCache
) -> Any:
    """Save a prompt template; `shared` (workspace admins) offers it to the workspace."""
    return await prompts.create_prompt(session, cache, user.id, data)


@prompt_router.get("", response_model=Page[PromptRead])
async def list_prompts(
    user: CurrentUser,
    session: SessionDep,
    page: PageParamsDep,
    workspace_id: Annotated[uuid.UUID | None, Query()] = None,
) -> Any:
    """Your prompts and those shared in your workspaces."""
    items, cursor = await prompts.list_prompts(session, user.id, workspace_id, page)
    return {"items": items, "next_cursor": cursor}


@prompt_router.get("/{prid}", response_model=PromptRead)
async def get_prompt(
    prid: uuid.UUID, user: CurrentUser, session: SessionDep, cache: RoleCache
) -> Any:
    return await prompts.readable_prompt(session, cache, user.id, prid)


@prompt_router.patch("/{prid}", response_model=PromptRead)
async def update_prompt(
    prid: uuid.UUID, data: PromptUpdate, user: CurrentUser, session: SessionDep, cache: RoleCache
) -> Any:
    return await prompts.update_prompt(session, cache, user.id, prid, data)


@prompt_router.delete("/{prid}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_prompt(
    prid: uuid.UUID, user: CurrentUser, session: SessionDep, cache: RoleCache
) -> Response:
    await prompts.delete_prompt(session, cache, user.id, prid)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
