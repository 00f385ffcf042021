"""Messages: post (idempotent), history, threads, edit, delete, reactions.

One service for every transport: the REST routes call it now, the WebSocket gateway's
``message.send`` and the AI assistant call the same functions.
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import cast

import emoji as emoji_lib
from sqlalchemy import case, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from huddle.access.channels import ChannelAccess, channel_access
from huddle.access.deps import Caller
from huddle.access.roles import Role
from huddle.auth.models import User
from huddle.chat.mentions import resolve_mentions
from huddle.chat.models import AuthorKind, Channel, Message, MessageMention, Reaction
from huddle.chat.schemas import (
    MentionData,
    MessageCreate,
    MessageData,
    MessageRead,
    ReactionCount,
    ReactionEventData,
)
from huddle.config import Rate
from huddle.core.cache import ScopedCache
from huddle.core.errors import Conflict, Forbidden, NotFound, RateLimited, ValidationFailed
from huddle.core.pagination import PageParams, paginate
from huddle.core.ratelimit import RateLimiter
from huddle.core.time import utcnow
from huddle.events import topics
from huddle.events.schemas import Actor
from huddle.events.service import record
from huddle.workspaces.schemas import UserSummary


@dataclass(frozen=True)
class ChatRuntime:
    """What chat services need besides a session: the role cache and the send limit."""

    cache: ScopedCache
    limiter: RateLimiter
    message_rate: Rate


async def message_access(
    session: AsyncSession, cache: ScopedCache, caller: Caller, message_id: uuid.UUID
) -> tuple[Message, ChannelAccess]:
    """A message and the caller's access to its channel; 404 unless they may read it."""
    message = await session.get(Message, message_id)
    if message is None:
        raise NotFound("Message not found")
    try:
        access = await channel_access(session, cache, caller.id, message.channel_id)
    except NotFound:
        raise NotFound("Message not found") from None
    if not access.can_read:
        raise NotFound("Message not found")
    return message, access


# --- reading ------------------------------------------------------------------------------


async def hydrate(
    session: AsyncSession, user_id: uuid.UUID | None, messages: list[Message]
) -> list[MessageRead]:
    """Read schemas for a page of messages: authors, reactions (with ``me``) and
    mentions in three queries whatever the page size."""
    ids = [m.id for m in messages]
    if not ids:
        return []
    author_ids = {m.author_id for m in messages if m.author_id is not None}
    authors = {
        u.id: UserSummary.model_validate(u)
        for u in (await session.scalars(select(User).where(User.id.in_(author_ids))))
    }
    reactions: dict[uuid.UUID, list[ReactionCount]] = defaultdict(list)
    mine = func.max(case((Reaction.user_id == user_id, 1), else_=0)) if user_id else None
    columns = [Reaction.message_id, Reaction.emoji, func.count(), func.min(Reaction.created_at)]
    if mine is not None:
        columns.append(mine)
    rows = await session.execute(
        select(*columns)
        .where(Reaction.message_id.in_(ids))
        .group_by(Reaction.message_id, Reaction.emoji)
        .order_by(Reaction.message_id, func.min(Reaction.created_at))
    )
    for row in rows:
        me = bool(row[4]) if mine is not None else False
        reactions[cast(uuid.UUID, row[0])].append(ReactionCount(emoji=row[1], count=row[2], me=me))
    mentions: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for message_id, mentioned in await session.execute(
        select(MessageMention.message_id, MessageMention.user_id).where(
            MessageMention.message_id.in_(ids)
        )
    ):
        mentions[message_id].append(mentioned)
    return [
        _message_read(
            m,
            mentions.get(m.id, []),
            authors.get(m.author_id) if m.author_id else None,
            reactions.get(m.id, []),
        )
        for m in messages
    ]


def _message_read(
    message: Message,
    mentions: list[uuid.UUID],
    author: UserSummary | None,
    reactions: list[ReactionCount],
) -> MessageRead:
    return MessageRead(**_data(message, mentions).model_dump(), author=author, reactions=reactions)


def _data(message: Message, mentions: list[uuid.UUID]) -> MessageData:
    data = MessageData.model_validate(message)
    data.mentions = sorted(mentions)
    return data


async def read_message(session: AsyncSession, user_id: uuid.UUID, message: Message) -> MessageRead:
    return (await hydrate(session, user_id, [message]))[0]


async def list_messages(
    session: AsyncSession,
    caller: Caller,
    access: ChannelAccess,
    params: PageParams,
    *,
    before: uuid.UUID | None = None,
    parent_id: uuid.UUID | None = None,
) -> tuple[list[MessageRead], str | None]:
    """History, newest first: top-level messages (roots carry ``reply_count``), or the
    replies of one thread with ``parent_id``. Tombstones of deleted messages included."""
    access.require_read()
    query = select(Message).where(Message.channel_id == access.channel.id)
    if parent_id is None:
        query = query.where(Message.parent_id.is_(None))
    else:
        parent = await session.get(Message, parent_id)
        if parent is None or parent.channel_id != access.channel.id:
            raise NotFound("Thread not found in this channel")
        query = query.where(Message.parent_id == parent_id)
    if before is not None:
        query = query.where(Message.id < before)
    messages, cursor = await paginate(session, query, Message.id, params)
    return await hydrate(session, caller.id, messages), cursor


# --- writing ------------------------------------------------------------------------------


async def _record_message(
    session: AsyncSession,
    caller: Caller,
    event_type: str,
    message: Message,
    access: ChannelAccess,
    mentions: list[uuid.UUID],
) -> None:
    await record(
        session,
        event_type,
        topic=topics.channel(message.channel_id),
        actor=caller.actor,
        data=_data(message, mentions),
        workspace_id=access.channel.workspace_id,
        subject_id=message.id,
    )


async def _set_mentions(
    session: AsyncSession,
    caller: Caller,
    access: ChannelAccess,
    message: Message,
    event_type: str,
    *,
    new: bool,
) -> list[uuid.UUID]:
    """Store who the message mentions now, record the message's event, then a
    ``mention`` event for each newly mentioned user (after the message they point to).
    Returns who it mentions."""
    wanted = await resolve_mentions(session, access.channel, message.content, message.author_id)
    current: set[uuid.UUID] = set()
    if not new:
        current.update(
            await session.scalars(
                select(MessageMention.user_id).where(MessageMention.message_id == message.id)
            )
        )
    if current - wanted:
        await session.execute(
            delete(MessageMention).where(
                MessageMention.message_id == message.id,
                MessageMention.user_id.in_(current - wanted),
            )
        )
    added = sorted(wanted - current)
    session.add_all(
        MessageMention(message_id=message.id, user_id=user_id, channel_id=message.channel_id)
        for user_id in added
    )
    await session.flush()
    mentioned = sorted(wanted)
    await _record_message(session, caller, event_type, message, access, mentioned)
    for user_id in added:
        await record(
            session,
            "mention",
            topic=topics.user(user_id),
            actor=caller.actor,
            data=MentionData(
                message_id=message.id,
                channel_id=message.channel_id,
                user_id=user_id,
                author_id=message.author_id,
            ),
            workspace_id=access.channel.workspace_id,
            subject_id=message.id,
        )
    return mentioned


async def _thread_parent(
    session: AsyncSession, access: ChannelAccess, parent_id: uuid.UUID
) -> Message:
    # Locked: a reply cannot slip onto a root being deleted at the same moment.
    parent = await session.get(Message, parent_id, with_for_update=True, populate_existing=True)
    problem = None
    if parent is None or parent.channel_id != access.channel.id:
        problem = "not a message of this channel"
    elif parent.parent_id is not None:
        problem = "replies go to the thread's first message, not to a reply"
    elif parent.deleted_at is not None:
        problem = "the message was deleted"
    if problem or parent is None:
        raise ValidationFailed(
            "Cannot reply to that message", details=[{"loc": ["body", "parent_id"], "msg": problem}]
        )
    return parent


async def _existing(
    session: AsyncSession, access: ChannelAccess, caller: Caller, client_msg_id: str
) -> Message | None:
    return await session.scalar(
        select(Message).where(
            Message.channel_id == access.channel.id,
            Message.author_id == caller.id,
            Message.client_msg_id == client_msg_id,
        )
    )


async def _count_reply(session: AsyncSession, parent_id: uuid.UUID, reply: Message) -> None:
    """A thread got a reply: its count and last reply time (an atomic UPDATE)."""
    await session.execute(
        update(Message)
        .where(Message.id == parent_id)
        .values(reply_count=Message.reply_count + 1, last_reply_at=reply.created_at)
    )


async def post_message(
    session: AsyncSession,
    runtime: ChatRuntime,
    caller: Caller,
    access: ChannelAccess,
    data: MessageCreate,
) -> tuple[MessageRead, bool]:
    """Post a message or a thread reply; (message, created).

    A repeated ``client_msg_id`` (same author, same channel) returns the first message
    and creates nothing — also when the two sends race (the unique constraint decides).
    """
    access.require_post()
    if data.client_msg_id is not None:
        first = await _existing(session, access, caller, data.client_msg_id)
        if first is not None:
            return await read_message(session, caller.id, first), False
    wait = await runtime.limiter.hit(f"messages:{caller.id}", runtime.message_rate)
    if wait is not None:
        raise RateLimited(wait, "Too many messages; slow down")
    parent = await _thread_parent(session, access, data.parent_id) if data.parent_id else None
    message = Message(
        channel_id=access.channel.id,
        author_id=caller.id,
        parent_id=data.parent_id,
        content=data.content,
        client_msg_id=data.client_msg_id,
    )
    if data.client_msg_id is None:
        session.add(message)
        await session.flush()
    else:  # only a racing send with the same client_msg_id can break a constraint here
        try:
            # Added inside the savepoint: SAVEPOINT first flushes what is pending, and
            # an INSERT flushed outside it would break the whole transaction.
            async with session.begin_nested():
                session.add(message)
                await session.flush()
        except IntegrityError:
            first = await _existing(session, access, caller, data.client_msg_id)
            if first is None:
                raise
            return await read_message(session, caller.id, first), False
    if parent is not None:
        await _count_reply(session, parent.id, message)
    mentioned = await _set_mentions(session, caller, access, message, "message.created", new=True)
    # A new message has no reactions yet and its author is the caller: nothing to read back.
    return _message_read(message, mentioned, UserSummary.model_validate(caller.user), []), True


async def edit_message(
    session: AsyncSession, caller: Caller, access: ChannelAccess, message: Message, content: str
) -> MessageRead:
    """Only the author edits (and only while they may post); mentions follow the text."""
    if message.author_id != caller.id:
        raise Forbidden("Only the author can edit a message")
    access.require_post()
    await session.refresh(message, with_for_update=True)
    if message.deleted_at is not None:
        raise Conflict("The message was deleted")
    if content != message.content:
        message.content = content
        message.edited_at = utcnow()
        await session.flush()
        await _set_mentions(session, caller, access, message, "message.updated", new=False)
    return await read_message(session, caller.id, message)


async def delete_message(
    session: AsyncSession, caller: Caller, access: ChannelAccess, message: Message
) -> None:
    """The author (while they may post) or an admin deletes; a tombstone stays in
    history, the text, reactions and mentions go. Deleting twice is a no-op."""
    own = message.author_id == caller.id and access.role.at_least(Role.member)
    if not own and access.role is not Role.admin:
        raise Forbidden("Only the author or an admin can delete a message")
    if message.deleted_at is not None:
        return
    # Conditional, so of two deletes at the same moment only one goes on (one event, one
    # reply_count decrement); it also takes the row lock edits and reactions wait for.
    gone = await session.execute(
        update(Message)
        .where(Message.id == message.id, Message.deleted_at.is_(None))
        .values(content="", deleted_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    await session.refresh(message)
    if gone.rowcount != 1:  # type: ignore[attr-defined]
        return
    await session.execute(delete(Reaction).where(Reaction.message_id == message.id))
    await session.execute(delete(MessageMention).where(MessageMention.message_id == message.id))
    if message.parent_id is not None:
        reply = aliased(Message)
        latest = (
            select(func.max(reply.created_at))
            .where(reply.parent_id == message.parent_id, reply.deleted_at.is_(None))
            .scalar_subquery()
        )
        await session.execute(
            update(Message)
            .where(Message.id == message.parent_id)
            .values(
                reply_count=case((Message.reply_count > 0, Message.reply_count - 1), else_=0),
                last_reply_at=latest,  # the latest reply still there, if any
            )
        )
    await session.flush()
    await _record_message(session, caller, "message.deleted", message, access, [])


# --- reactions ----------------------------------------------------------------------------

_EMOJI_NAME = re.compile(r"[a-z0-9_+-]{1,64}")


def check_emoji(value: str) -> str:
    """A single Unicode emoji (skin tones and ZWJ sequences included) or a custom
    emoji's name (``party-parrot``)."""
    if len(value) <= 64 and (emoji_lib.is_emoji(value) or _EMOJI_NAME.fullmatch(value)):
        return value
    raise ValidationFailed(
        "Not an emoji",
        details=[{"loc": ["path", "emoji"], "msg": "one emoji, or a name of a-z, 0-9, _ + -"}],
    )


async def add_reaction(
    session: AsyncSession, caller: Caller, access: ChannelAccess, message: Message, emoji: str
) -> MessageRead:
    """React (idempotent: reacting twice with the same emoji changes nothing)."""
    access.require_post()
    emoji = check_emoji(emoji)
    await session.refresh(message, with_for_update=True)  # not while it is being deleted
    if message.deleted_at is not None:
        raise Conflict("The message was deleted")
    try:
        async with session.begin_nested():
            session.add(Reaction(message_id=message.id, user_id=caller.id, emoji=emoji))
            await session.flush()
    except IntegrityError:
        pass  # already there
    else:
        await _reaction_event(session, caller, access, "reaction.added", message, emoji)
    return await read_message(session, caller.id, message)


async def remove_reaction(
    session: AsyncSession, caller: Caller, access: ChannelAccess, message: Message, emoji: str
) -> None:
    """Take one's reaction back (idempotent)."""
    access.require_post()
    emoji = check_emoji(emoji)
    removed = await session.execute(
        delete(Reaction).where(
            Reaction.message_id == message.id,
            Reaction.user_id == caller.id,
            Reaction.emoji == emoji,
        )
    )
    if removed.rowcount:  # type: ignore[attr-defined]
        await _reaction_event(session, caller, access, "reaction.removed", message, emoji)


async def _reaction_event(
    session: AsyncSession,
    caller: Caller,
    access: ChannelAccess,
    event_type: str,
    message: Message,
    emoji: str,
) -> None:
    await record(
        session,
        event_type,
        topic=topics.channel(message.channel_id),
        actor=caller.actor,
        data=ReactionEventData(
            message_id=message.id, channel_id=message.channel_id, user_id=caller.id, emoji=emoji
        ),
        workspace_id=access.channel.workspace_id,
        subject_id=message.id,
    )


async def post_assistant_message(
    session: AsyncSession,
    channel: Channel,
    content: str,
    *,
    on_behalf_of: uuid.UUID | None,
    parent_id: uuid.UUID | None,
    reply_key: str,
) -> Message | None:
    """The assistant's message in a channel (``author_kind`` ai, no author), answering
    ``on_behalf_of``'s request. ``reply_key`` makes it happen once: a repeat with the
    same key (a redelivered event) posts nothing and returns None."""
    exists = await session.scalar(
        select(Message.id).where(
            Message.channel_id == channel.id,
            Message.author_kind == AuthorKind.ai,
            Message.client_msg_id == reply_key,
        )
    )
    if exists is not None:
        return None
    if parent_id is not None:
        parent = await session.get(Message, parent_id, with_for_update=True)
        if parent is None or parent.deleted_at is not None:
            parent_id = None  # the thread is gone: answer in the channel
    message = Message(
        channel_id=channel.id,
        author_id=None,
        author_kind=AuthorKind.ai,
        parent_id=parent_id,
        content=content,
        client_msg_id=reply_key,
    )
    session.add(message)
    await session.flush()
    if parent_id is not None:
        await _count_reply(session, parent_id, message)
    actor = Actor(kind="agent", on_behalf_of=on_behalf_of) if on_behalf_of else Actor.system()
    await record(
        session,
        "message.created",
        topic=topics.channel(message.channel_id),
        actor=actor,
        data=_data(message, []),
        workspace_id=channel.workspace_id,
        subject_id=message.id,
    )
    return message


async def post_system_message(
    session: AsyncSession, caller: Caller, access: ChannelAccess, content: str
) -> Message:
    """A message no user wrote (``author_kind`` system, no author) posted for ``caller``,
    who must be allowed to post in the channel; its events carry ``caller.actor`` (an
    automation rule, see :mod:`huddle.automation.engine`). Mentions notify as usual."""
    access.require_post()
    message = Message(
        channel_id=access.channel.id,
        author_id=None,
        author_kind=AuthorKind.system,
        content=content,
    )
    session.add(message)
    await session.flush()
    await _set_mentions(session, caller, access, message, "message.created", new=True)
    return message
