"""What the model writes from what a user can read: channel summaries, search answers.

Summaries are map-reduce when the messages do not fit the model's context: the
transcript (oldest first) is cut into parts that each fit
``HUDDLE_AI_CONTEXT_TOKENS`` (estimated at 4 characters per token), each part is
summarised, and the part summaries are summarised together (again in parts, until one
text remains). At most :data:`MAX_MESSAGES` of the newest messages are read, and at most
:data:`MAX_PARTS` parts' worth of them (the newest) are summarised; ``message_count``
says how many were.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from huddle.access.channels import channel_access
from huddle.ai.llm import LLM
from huddle.ai.schemas import Summary
from huddle.auth.models import User
from huddle.chat.channels import DM_TITLE
from huddle.chat.models import AuthorKind, Channel, ChannelKind, Message
from huddle.core.cache import ScopedCache
from huddle.core.db import Database
from huddle.core.errors import NotFound
from huddle.search.schemas import AISource

MAX_MESSAGES = 2000
#: Parts of one summary: a longer channel is summarised from its newest messages that
#: fit, so one summary costs at most MAX_PARTS + a few merge calls.
MAX_PARTS = 8
#: Characters of one message kept in a transcript (a pasted log does not eat the context).
MESSAGE_CHARS = 2000

SUMMARY_PROMPT = (
    "Summarise this chat from {where} for a teammate who missed it: the topics, the "
    "decisions, open questions and who is doing what. Use short bullet points. Only use "
    "what the messages say."
)
MERGE_PROMPT = (
    "These are summaries of consecutive parts of one chat in {where}, oldest first. "
    "Merge them into one summary with the same short bullet points."
)
ANSWER_PROMPT = (
    "Answer the question using only the numbered sources below, citing them as [1], [2]. "
    "If the sources do not answer it, say so briefly."
)


def channel_title(channel: Channel) -> str:
    return DM_TITLE if channel.kind is ChannelKind.dm else f"#{channel.name}"


async def transcript(
    session: AsyncSession,
    cache: ScopedCache,
    user_id: uuid.UUID,
    channel_id: uuid.UUID,
    since: datetime | None,
    workspace_id: uuid.UUID | None = None,
) -> tuple[Channel, list[str]]:
    """The channel's live messages (threads included) as lines, oldest first, if the
    user may read it (else 404, as for history) and it is in ``workspace_id`` if given."""
    access = await channel_access(session, cache, user_id, channel_id)
    if not access.can_read or workspace_id not in (None, access.channel.workspace_id):
        raise NotFound("Channel not found")
    query = (
        select(Message, User.username)
        .outerjoin(User, User.id == Message.author_id)
        .where(Message.channel_id == channel_id, Message.deleted_at.is_(None))
        .order_by(Message.id.desc())
        .limit(MAX_MESSAGES)
    )
    if since is not None:
        query = query.where(Message.created_at > since)
    rows = list(await session.execute(query))
    lines = []
    for message, username in reversed(rows):
        who = "assistant" if message.author_kind is AuthorKind.ai else (username or "someone")
        text = " ".join(message.content.split())
        if len(text) > MESSAGE_CHARS:
            text = text[:MESSAGE_CHARS] + " …"
        thread = " (in a thread)" if message.parent_id else ""
        lines.append(f"[{message.created_at:%Y-%m-%d %H:%M}] {who}{thread}: {text}")
    return access.channel, lines


def split(lines: list[str], budget_chars: int) -> list[list[str]]:
    """Consecutive lines in parts of at most ``budget_chars`` (a longer line is alone)."""
    parts: list[list[str]] = [[]]
    size = 0
    for line in lines:
        if parts[-1] and size + len(line) + 1 > budget_chars:
            parts.append([])
            size = 0
        parts[-1].append(line)
        size += len(line) + 1
    return [p for p in parts if p]


async def summarize_lines(
    llm: LLM,
    lines: list[str],
    where: str,
    *,
    budget_tokens: int,
    user_id: uuid.UUID | None,
) -> str:
    budget_chars = part_chars(budget_tokens)
    texts = ["\n".join(part) for part in split(lines, budget_chars)]
    prompt = SUMMARY_PROMPT
    while True:
        outputs = [
            await llm.complete(
                [
                    {"role": "system", "content": prompt.format(where=where)},
                    {"role": "user", "content": text},
                ],
                purpose="summary",
                user_id=user_id,
            )
            for text in texts
        ]
        if len(outputs) == 1:
            return outputs[0]
        # Reduce: the part summaries, merged (in parts again if they are still too long).
        merged = split(outputs, budget_chars)
        if len(merged) >= len(texts):  # nothing shrinks: stop rather than loop
            return "\n".join(outputs)
        texts = ["\n\n".join(part) for part in merged]
        prompt = MERGE_PROMPT


async def summarize_channel(
    db: Database,
    cache: ScopedCache,
    llm: LLM,
    user_id: uuid.UUID,
    channel_id: uuid.UUID,
    since: datetime | None,
    *,
    budget_tokens: int,
    before_generating: Callable[[], Awaitable[None]] | None = None,
    workspace_id: uuid.UUID | None = None,
) -> Summary:
    """Read access first (404), then the model (503 when none, ``before_generating``
    for the rate limit), then the summary. The transcript is read in a short read
    transaction that is closed before the model is asked."""
    async with db.read_session() as session:
        channel, lines = await transcript(session, cache, user_id, channel_id, since, workspace_id)
    llm.require()
    if before_generating is not None:
        await before_generating()
    if not lines:
        return Summary(summary="There are no messages to summarise.", message_count=0)
    lines = newest_that_fit(lines, MAX_PARTS * part_chars(budget_tokens))
    text = await summarize_lines(
        llm, lines, channel_title(channel), budget_tokens=budget_tokens, user_id=user_id
    )
    return Summary(summary=text, message_count=len(lines))


def part_chars(budget_tokens: int) -> int:
    """Characters of transcript per model call (the prompt and answer need the rest)."""
    return max(2000, budget_tokens * 4 - 1000)


def newest_that_fit(lines: list[str], chars: int) -> list[str]:
    """The newest lines whose total length fits ``chars`` (always the newest one)."""
    kept: list[str] = []
    size = 0
    for line in reversed(lines):
        if kept and size + len(line) + 1 > chars:
            break
        kept.append(line)
        size += len(line) + 1
    kept.reverse()
    return kept


async def answer(
    llm: LLM, question: str, sources: list[AISource], user_id: uuid.UUID, budget_tokens: int
) -> str | None:
    """An answer from the sources, citing them by number (their order in ``sources``)."""
    if not sources:
        return None
    budget_chars = part_chars(budget_tokens)
    numbered: list[str] = []
    for n, source in enumerate(sources, 1):
        entry = f"[{n}] {source.kind} “{source.title}”: {source.snippet}"
        if sum(len(e) for e in numbered) + len(entry) > budget_chars:
            break
        numbered.append(entry)
    return await llm.complete(
        [
            {"role": "system", "content": ANSWER_PROMPT},
            {"role": "user", "content": "\n".join(numbered) + f"\n\nQuestion: {question}"},
        ],
        purpose="answer",
        user_id=user_id,
    )
