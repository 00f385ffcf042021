"""Conversations with the assistant, one turn of the agent, and pending actions.

A turn never holds a database transaction while the model thinks: the user's message is
committed first, each tool call runs in its own transaction (through the services, as
the user), and the turn's messages are committed when the agent is done — also when it
failed half-way, so what the tools did stays on record.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import State

from huddle.access.service import workspace_access
from huddle.ai import agent
from huddle.ai.llm import LLM, ProviderError
from huddle.ai.models import ActionStatus, AIConversation, AIMessage, AIPendingAction, AIRole
from huddle.ai.prompts import readable_prompt
from huddle.ai.schemas import (
    ActionResult,
    AIMessageRead,
    ConversationCreate,
    ConversationDetail,
    ConversationRead,
    PendingAction,
    Reply,
)
from huddle.ai.tools import CONFIRMED, ToolScope, agent_caller, parse_args
from huddle.auth.models import User
from huddle.config import Settings
from huddle.core.cache import ScopedCache
from huddle.core.db import unit_of_work
from huddle.core.errors import AppError, Conflict, Gone, NotFound, RateLimited
from huddle.core.idempotency import KEEP_ERROR_HEADER
from huddle.core.pagination import PageParams, paginate
from huddle.core.ratelimit import RateLimiter
from huddle.core.time import utcnow
from huddle.workspaces.models import Membership, Workspace

log = logging.getLogger("huddle.ai")


@dataclass(frozen=True)
class AIRuntime:
    """The assistant's parts (``app.state.ai``)."""

    llm: LLM
    limiter: RateLimiter
    settings: Settings

    async def check_rate(self, user_id: uuid.UUID) -> None:
        """``HUDDLE_RATE_AI`` generations per user (429 with Retry-After)."""
        wait = await self.limiter.hit(f"ai:{user_id}", self.settings.ai_rate)
        if wait is not None:
            raise RateLimited(wait, f"Too many requests to the assistant; retry in {wait} s")


# --- conversations ---------------------------------------------------------------------------


async def default_workspace(session: AsyncSession, user_id: uuid.UUID) -> uuid.UUID | None:
    """The user's workspace when they are in exactly one (else None: they must say)."""
    ids = (
        await session.scalars(
            select(Membership.workspace_id).where(Membership.user_id == user_id).limit(2)
        )
    ).all()
    return ids[0] if len(ids) == 1 else None


async def create_conversation(
    session: AsyncSession, cache: ScopedCache, user_id: uuid.UUID, data: ConversationCreate
) -> AIConversation:
    workspace_id = data.workspace_id
    if workspace_id is not None:
        await workspace_access(session, cache, user_id, workspace_id)
    else:
        workspace_id = await default_workspace(session, user_id)
    system_prompt = data.system_prompt
    if data.prompt_id is not None:
        prompt = await readable_prompt(session, cache, user_id, data.prompt_id)
        system_prompt = "\n\n".join(p for p in (prompt.content, system_prompt) if p)
    conversation = AIConversation(
        owner_id=user_id,
        workspace_id=workspace_id,
        title=data.title or "",
        system_prompt=system_prompt or None,
    )
    session.add(conversation)
    await session.flush()
    return conversation


async def own_conversation(
    session: AsyncSession, user_id: uuid.UUID, conversation_id: uuid.UUID, *, lock: bool = False
) -> AIConversation:
    """The caller's conversation; anyone else's is 404 (its existence is not told)."""
    query = select(AIConversation).where(AIConversation.id == conversation_id)
    if lock:
        query = query.with_for_update()
    conversation = await session.scalar(query)
    if conversation is None or conversation.owner_id != user_id:
        raise NotFound("Conversation not found")
    return conversation


async def list_conversations(
    session: AsyncSession, user_id: uuid.UUID, page: PageParams
) -> tuple[list[AIConversation], str | None]:
    query = select(AIConversation).where(AIConversation.owner_id == user_id)
    return await paginate(session, query, AIConversation.id, page)


def message_read(message: AIMessage) -> AIMessageRead:
    return AIMessageRead.model_validate(message)


async def _messages(session: AsyncSession, conversation_id: uuid.UUID) -> list[AIMessage]:
    return list(
        (
            await session.scalars(
                select(AIMessage)
                .where(AIMessage.conversation_id == conversation_id)
                .order_by(AIMessage.position)
            )
        ).all()
    )


async def pending_actions(
    session: AsyncSession, conversation_id: uuid.UUID, since: Any = None
) -> list[PendingAction]:
    query = (
        select(AIPendingAction)
        .where(AIPendingAction.conversation_id == conversation_id)
        .where(AIPendingAction.status == ActionStatus.pending)
        .where(AIPendingAction.expires_at > utcnow())
        .order_by(AIPendingAction.created_at, AIPendingAction.id)
    )
    if since is not None:
        query = query.where(AIPendingAction.created_at >= since)
    return [
        PendingAction(id=a.id, tool=a.tool, args=a.args, expires_at=a.expires_at)
        for a in (await session.scalars(query)).all()
    ]


async def conversation_detail(
    session: AsyncSession, conversation: AIConversation
) -> ConversationDetail:
    messages = await _messages(session, conversation.id)
    return ConversationDetail(
        **ConversationRead.model_validate(conversation).model_dump(),
        messages=[message_read(m) for m in messages],
        pending_actions=await pending_actions(session, conversation.id),
    )


async def delete_conversation(
    session: AsyncSession, user_id: uuid.UUID, conversation_id: uuid.UUID
) -> None:
    conversation = await own_conversation(session, user_id, conversation_id, lock=True)
    await session.execute(delete(AIMessage).where(AIMessage.conversation_id == conversation.id))
    await session.delete(conversation)


async def _append(
    session: AsyncSession, conversation: AIConversation, messages: list[dict[str, Any]]
) -> list[AIMessage]:
    """Add messages at the end (the conversation row is locked by the caller)."""
    last = await session.scalar(
        select(func.max(AIMessage.position)).where(AIMessage.conversation_id == conversation.id)
    )
    position = -1 if last is None else last
    rows = []
    for message in messages:
        position += 1
        row = AIMessage(
            conversation_id=conversation.id,
            position=position,
            role=AIRole(message["role"]),
            content=message.get("content"),
            tool_calls=message.get("tool_calls"),
            tool_call_id=message.get("tool_call_id"),
            tool_name=message.get("tool_name"),
        )
        session.add(row)
        rows.append(row)
    conversation.updated_at = utcnow()
    await session.flush()
    return rows


def _as_history(message: AIMessage) -> dict[str, Any]:
    return {
        "role": message.role.value,
        "content": message.content,
        "tool_calls": message.tool_calls,
        "tool_call_id": message.tool_call_id,
        "tool_name": message.tool_name,
    }


@dataclass
class Turn:
    """A user's message, committed, and what the agent needs to answer it."""

    conversation_id: uuid.UUID
    scope: ToolScope
    history: list[dict[str, Any]]
    system: str
    user_message: AIMessageRead
    started: Any


async def begin_turn(
    state: State, runtime: AIRuntime, user_id: uuid.UUID, conversation_id: uuid.UUID, content: str
) -> Turn:
    """Store the user's message (committed before the model is asked)."""
    async with unit_of_work(state, write=True) as session:
        conversation = await own_conversation(session, user_id, conversation_id, lock=True)
        runtime.llm.require()
        if conversation.workspace_id is not None:
            # Still a member? (A removed member's old conversation cannot act.)
            await workspace_access(session, state.role_cache, user_id, conversation.workspace_id)
        await runtime.check_rate(user_id)
        started = utcnow()
        [row] = await _append(session, conversation, [{"role": "user", "content": content}])
        if not conversation.title:
            conversation.title = " ".join(content.split())[:80]
        history = [_as_history(m) for m in await _messages(session, conversation.id)]
        user = await session.get(User, user_id)
        assert user is not None
        workspace = (
            await session.get(Workspace, conversation.workspace_id)
            if conversation.workspace_id
            else None
        )
        system = agent.instructions(
            user.full_name or user.username,
            workspace.name if workspace else "(none)",
            conversation.system_prompt,
        )
        user_message = message_read(row)
    budget = max(200, runtime.settings.ai_context_tokens - len(system) // 4)
    return Turn(
        conversation_id=conversation_id,
        scope=ToolScope(state, user_id, conversation.workspace_id, conversation_id),
        history=agent.trim_history(history, budget),
        system=system,
        user_message=user_message,
        started=started,
    )


async def finish_turn(
    state: State, runtime: AIRuntime, turn: Turn, record: agent.TurnRecord
) -> Reply:
    """Store what the turn produced, and its usage; the reply with pending actions."""
    async with unit_of_work(state, write=True) as session:
        conversation = await own_conversation(
            session, turn.scope.user_id, turn.conversation_id, lock=True
        )
        rows = await _append(session, conversation, record.messages)
        new = [turn.user_message] + [message_read(r) for r in rows]
        pending = await pending_actions(session, conversation.id, since=turn.started)
    await runtime.llm.record_usage(turn.scope.user_id, turn.conversation_id, "chat", record.usage)
    final = next((m for m in reversed(new) if m.role == "assistant" and m.content), new[-1])
    return Reply(message=final, messages=new, pending_actions=pending)


async def run_turn(
    state: State,
    runtime: AIRuntime,
    turn: Turn,
    stream: agent.StreamSink | None = None,
) -> Reply:
    try:
        record = await agent.run_agent(
            runtime.llm,
            turn.scope,
            turn.history,
            turn.system,
            max_turns=runtime.settings.ai_max_turns,
            stream=stream,
        )
    except ProviderError as exc:
        partial: agent.TurnRecord | None = getattr(exc, "record", None)
        if partial is not None and partial.messages:
            await finish_turn(state, runtime, turn, partial)
        # The user's message (and maybe tool writes) are committed: a retry with the same
        # Idempotency-Key gets this answer again instead of doing them twice.
        exc.headers[KEEP_ERROR_HEADER] = "1"
        raise
    except asyncio.CancelledError as exc:
        partial = getattr(exc, "record", None)
        if partial is not None and partial.messages:
            await asyncio.shield(finish_turn(state, runtime, turn, partial))
        raise
    return await finish_turn(state, runtime, turn, record)


# --- pending actions -------------------------------------------------------------------------


async def confirm_action(
    state: State,
    user_id: uuid.UUID,
    action_id: uuid.UUID,
    workspace_id: uuid.UUID | None = None,
) -> ActionResult:
    """Run a pending action as the agent actor of the call that asked for it (only one of
    ``workspace_id``'s, when given). If it cannot be done any more, it is marked failed
    with the reason, and the error is the answer."""
    async with unit_of_work(state, write=True) as session:
        action = await session.scalar(
            select(AIPendingAction).where(AIPendingAction.id == action_id).with_for_update()
        )
        if action is None or action.user_id != user_id:
            raise NotFound("Action not found")
        if action.status == ActionStatus.confirmed:
            raise Conflict("This action was already confirmed", details={"result": action.result})
        if action.status != ActionStatus.pending:
            raise Conflict(
                "This action failed when it was confirmed", details={"result": action.result}
            )
        if action.expires_at <= utcnow():
            raise Gone("This action expired: ask the assistant again")
        if workspace_id is not None and action.workspace_id != workspace_id:
            raise NotFound("Action not found")
        tool = CONFIRMED[action.tool]
        scope = ToolScope(state, user_id, action.workspace_id, action.conversation_id)
        user = await session.get(User, user_id)
        assert user is not None
        try:
            async with session.begin_nested():
                result = await tool.run(
                    session,
                    scope,
                    agent_caller(user, action.tool_call_id),
                    parse_args(tool, action.args),
                )
        except AppError as exc:
            # It cannot be done (any more): say why, and stop offering it.
            action.status = ActionStatus.failed
            action.decided_at = utcnow()
            action.result = {"error": {"code": exc.code, "message": exc.message}}
            exc.keep_changes = True
            raise
        action.status = ActionStatus.confirmed
        action.decided_at = utcnow()
        action.result = result
        if action.conversation_id is not None:
            conversation = await session.scalar(
                select(AIConversation)
                .where(AIConversation.id == action.conversation_id)
                .with_for_update()
            )
            if conversation is not None:
                await _append(
                    session,
                    conversation,
                    [
                        {
                            "role": "assistant",
                            "content": f"(The user confirmed {action.tool}: "
                            f"{json.dumps(result, default=str)})",
                        }
                    ],
                )
        return ActionResult(id=action.id, tool=action.tool, status="confirmed", result=result)
