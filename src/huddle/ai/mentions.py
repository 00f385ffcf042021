"""``@ai`` in chat: the assistant answers in the same channel.

The responder is an outbox consumer, like the search indexer: a
:class:`~huddle.events.forwarder.Forwarder` hands it the published events in ``seq``
order with its own cursor (``bus_cursors`` row ``ai-mentions``), so the sender's request
is never held up by the model, and a restart resumes where it stopped. For every
``message.created`` by a user whose text mentions ``@ai``, it reads the channel's recent
messages (the thread's, for a reply in a thread), asks the model, and posts the answer
in the same channel and thread with ``author_kind`` ai and ``actor = {kind: agent,
on_behalf_of: <the author>}``. A redelivered event finds the answer already posted (its
``client_msg_id`` is ``ai-reply:<message id>``) and posts nothing. When the model fails,
a short message says so rather than leaving the question hanging.

The answer only draws on that channel's messages, which everyone reading the channel
already sees. Mentions are answered one at a time, in order.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Sequence

from sqlalchemy import or_, select
from starlette.datastructures import State

from huddle.ai.llm import LLM, ProviderError
from huddle.ai.summaries import MESSAGE_CHARS, channel_title
from huddle.auth.models import User
from huddle.chat.messages import post_assistant_message
from huddle.chat.models import AuthorKind, Channel, Message
from huddle.chat.schemas import MAX_MESSAGE_CHARS
from huddle.core.db import unit_of_work
from huddle.events.schemas import Envelope

log = logging.getLogger("huddle.ai.mentions")

CURSOR = "ai-mentions"
MENTION = re.compile(r"(?<![\w@])@ai\b", re.IGNORECASE)
CONTEXT_MESSAGES = 30
PROMPT = (
    "You are Huddle's assistant in the team chat {where}. Someone mentioned you (@ai) in "
    "the last message below. Answer it briefly and helpfully, using the conversation for "
    "context; say so when you do not know."
)


def reply_key(message_id: uuid.UUID) -> str:
    return f"ai-reply:{message_id}"


def mentions_ai(text: str) -> bool:
    return MENTION.search(text) is not None


class MentionResponder:
    """An :class:`~huddle.events.bus.EventBus` that answers ``@ai`` mentions."""

    def __init__(self, state: State, llm: LLM, context_tokens: int) -> None:
        self._state = state
        self._llm = llm
        self._budget_chars = max(2000, context_tokens * 4 - 1000)

    async def publish(self, events: Sequence[Envelope]) -> None:
        for event in events:
            if event.type != "message.created":
                continue
            data = event.data
            if data.get("author_kind") != AuthorKind.user.value or not data.get("author_id"):
                continue
            if data.get("deleted_at") or not mentions_ai(str(data.get("content", ""))):
                continue
            try:
                await self._answer(uuid.UUID(str(data["id"])), uuid.UUID(str(data["author_id"])))
            except Exception:
                # One bad event must not stop every later answer.
                log.exception("could not answer the @ai mention in message %s", data.get("id"))

    async def _answer(self, message_id: uuid.UUID, author_id: uuid.UUID) -> None:
        async with self._state.db.read_session() as session:
            message = await session.get(Message, message_id)
            if message is None or message.deleted_at is not None:
                return
            channel = await session.get(Channel, message.channel_id)
            if channel is None or channel.deleted_at is not None:
                return
            answered = await session.scalar(
                select(Message.id).where(
                    Message.channel_id == channel.id,
                    Message.author_kind == AuthorKind.ai,
                    Message.client_msg_id == reply_key(message.id),
                )
            )
            if answered is not None:  # a redelivered event: answered already
                return
            where = channel_title(channel)
            root = message.parent_id
            query = (
                select(Message, User.username)
                .outerjoin(User, User.id == Message.author_id)
                .where(
                    Message.channel_id == channel.id,
                    Message.deleted_at.is_(None),
                    Message.id <= message.id,
                )
                .order_by(Message.id.desc())
                .limit(CONTEXT_MESSAGES)
            )
            if root is not None:
                query = query.where(or_(Message.id == root, Message.parent_id == root))
            else:
                query = query.where(Message.parent_id.is_(None))
            rows = list(await session.execute(query))
        lines: list[str] = []
        size = 0
        for row, username in rows:  # newest first: keep what fits, then restore order
            who = "assistant" if row.author_kind is AuthorKind.ai else (username or "someone")
            line = f"{who}: {' '.join(row.content.split())[:MESSAGE_CHARS]}"
            if lines and size + len(line) > self._budget_chars:
                break
            lines.append(line)
            size += len(line) + 1
        lines.reverse()
        try:
            text = await self._llm.complete(
                [
                    {"role": "system", "content": PROMPT.format(where=where)},
                    {"role": "user", "content": "\n".join(lines)},
                ],
                purpose="mention",
                user_id=author_id,
            )
        except ProviderError as exc:
            text = f"Sorry, I could not answer: {exc.message}."
        text = text.strip() or "Sorry, I have no answer."
        async with unit_of_work(self._state, write=True) as session:
            channel = await session.get(Channel, message.channel_id)
            if channel is None or channel.deleted_at is not None:
                return
            await post_assistant_message(
                session,
                channel,
                text[:MAX_MESSAGE_CHARS],
                on_behalf_of=author_id,
                parent_id=message.parent_id,
                reply_key=reply_key(message.id),
            )

    async def aclose(self) -> None:
        await self._llm.aclose()
