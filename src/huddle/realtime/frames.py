"""Client frames (DESIGN.md §6): parsed, permission-checked, answered with an ack.

Each handler opens its own short database transaction; nothing holds a session while
a socket is open. Errors are acks with ``ok: false`` and the REST error shape.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError
from sqlalchemy import func, select
from starlette.datastructures import State

from huddle.access.channels import channel_access
from huddle.access.deps import Caller
from huddle.access.service import bypass_cache
from huddle.access.topics import can_read_topic
from huddle.auth.models import User
from huddle.chat.messages import post_message
from huddle.chat.models import Channel, ChannelKind
from huddle.chat.schemas import MessageCreate
from huddle.core.db import unit_of_work
from huddle.core.errors import (
    AppError,
    Conflict,
    NotFound,
    ValidationFailed,
    error_body,
    validation_details,
)
from huddle.events import topics
from huddle.events.models import Event
from huddle.events.service import latest_seq, read_events
from huddle.projects.models import Project
from huddle.realtime.connection import Connection, event_frame
from huddle.realtime.fanout import Route
from huddle.realtime.hub import Hub
from huddle.workspaces.models import Membership

Ref = str | int | None
_REPLAY_PAGE = 500
_TYPING_EVERY = 2.0  # seconds: a client sending typing faster is answered, not relayed


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ref: str | int | None = None


class Subscribe(_Frame):
    type: Literal["subscribe", "unsubscribe"]
    topic: str = Field(max_length=100)


class Resume(_Frame):
    type: Literal["resume"]
    since: int = Field(ge=0, le=2**62)


class Send(_Frame):
    type: Literal["message.send"]
    channel_id: uuid.UUID
    content: str
    parent_id: uuid.UUID | None = None
    client_msg_id: str | None = None


class ChannelFrame(_Frame):
    type: Literal["typing", "call.join", "call.leave"]
    channel_id: uuid.UUID


class Signal(_Frame):
    type: Literal["call.signal"]
    channel_id: uuid.UUID
    target_user_id: uuid.UUID
    signal: JsonValue


class Ping(_Frame):
    type: Literal["ping"]


FRAMES: dict[str, type[_Frame]] = {
    "subscribe": Subscribe,
    "unsubscribe": Subscribe,
    "resume": Resume,
    "message.send": Send,
    "typing": ChannelFrame,
    "call.join": ChannelFrame,
    "call.leave": ChannelFrame,
    "call.signal": Signal,
    "ping": Ping,
}


class FrameError(AppError):
    """An error that only exists on the socket (``resync_required``, ``not_in_call``...)."""

    def __init__(self, code: str, message: str, status: int = 409, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.code = code
        self.status_code = status


def ack(ref: Ref, data: Any = None) -> str:
    return json.dumps({"type": "ack", "ref": ref, "ok": True, "data": data}, default=str)


def error_ack(ref: Ref, exc: AppError) -> str:
    error = error_body(exc.message, exc.code, exc.details)
    return json.dumps({"type": "ack", "ref": ref, "ok": False, "error": error}, default=str)


@dataclass
class Session:
    """What frame handlers need: the hub, the socket and the app's state."""

    hub: Hub
    conn: Connection
    state: State
    typing_at: dict[uuid.UUID, float]

    @property
    def settings(self) -> Any:
        return self.state.settings


async def handle(ctx: Session, text: str) -> None:
    """Parse one client frame, run it, and queue its ack (or pong)."""
    ref: Ref = None
    try:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValidationFailed("A frame is a JSON object")
        candidate = raw.get("ref")
        if isinstance(candidate, str | int) and not isinstance(candidate, bool):
            ref = candidate if not isinstance(candidate, str) else candidate[:100]
        model = FRAMES.get(raw.get("type"))  # type: ignore[arg-type]
        if model is None:
            raise ValidationFailed(
                "Unknown frame type", details=[{"loc": ["type"], "msg": f"one of {sorted(FRAMES)}"}]
            )
        frame = model.model_validate(raw)
        if isinstance(frame, Ping):
            ctx.conn.push(json.dumps({"type": "pong", "ref": ref}))
            return
        data = await _dispatch(ctx, frame)
        if not isinstance(frame, Resume):  # resume queues its own ack, in order
            ctx.conn.push(ack(ref, data))
    except (json.JSONDecodeError, RecursionError):
        ctx.conn.push(error_ack(ref, ValidationFailed("A frame is a JSON object")))
    except ValidationError as exc:
        details = validation_details(exc.errors())
        ctx.conn.push(error_ack(ref, ValidationFailed("Invalid frame", details=details)))
    except AppError as exc:
        ctx.conn.push(error_ack(ref, exc))


async def _dispatch(ctx: Session, frame: _Frame) -> Any:
    if isinstance(frame, Subscribe):
        if frame.type == "subscribe":
            return await subscribe(ctx, frame.topic)
        ctx.hub.unsubscribe(ctx.conn, frame.topic)
        return {"topic": frame.topic}
    if isinstance(frame, Resume):
        await resume(ctx, frame.since, frame.ref)
        return None
    if isinstance(frame, Send):
        return await send(ctx, frame)
    if isinstance(frame, Signal):
        return await signal(ctx, frame)
    assert isinstance(frame, ChannelFrame)
    if frame.type == "typing":
        return await typing(ctx, frame.channel_id)
    if frame.type == "call.join":
        return await join_call(ctx, frame.channel_id)
    return await leave_call(ctx, frame.channel_id)


# --- subscriptions --------------------------------------------------------------------------


async def _topic_workspace(session: Any, topic: str) -> uuid.UUID | None:
    parsed = topics.parse(topic)
    assert parsed is not None
    kind, ident = parsed
    if kind in ("workspace", "workspace_admin"):
        return ident
    if kind == "project":
        return await session.scalar(select(Project.workspace_id).where(Project.id == ident))
    if kind == "channel":
        return await session.scalar(select(Channel.workspace_id).where(Channel.id == ident))
    return None


async def subscribe(ctx: Session, topic: str) -> dict[str, Any]:
    """Subscribe after checking the caller may read the topic (404 otherwise)."""
    if topics.parse(topic) is None:
        raise ValidationFailed("Unknown topic", details=[{"loc": ["topic"], "msg": "not a topic"}])
    if topic not in ctx.conn.topics and len(ctx.conn.topics) >= ctx.settings.ws_max_subscriptions:
        raise FrameError("too_many_subscriptions", "Too many subscriptions on this socket")
    retry = False
    while True:
        async with unit_of_work(ctx.state, write=False) as session:
            workspace_id = await _topic_workspace(session, topic)
            if retry and workspace_id is not None:
                bypass_cache(session, workspace_id)  # an access change raced this check
            epoch = ctx.hub.epochs.get(workspace_id, 0) if workspace_id else 0
            allowed = await can_read_topic(session, ctx.state.role_cache, ctx.conn.user_id, topic)
            data: dict[str, Any] = {"topic": topic}
            if allowed and workspace_id is not None and topic == topics.workspace(workspace_id):
                data["online"] = await _online(ctx, session, workspace_id)
        if not allowed:
            raise NotFound("Unknown topic")
        if workspace_id is None or ctx.hub.epochs.get(workspace_id, 0) == epoch:
            break  # no access change in that workspace while we checked
        retry = True
    ctx.hub.subscribe(ctx.conn, topic, workspace_id)
    return data


async def _online(ctx: Session, session: Any, workspace_id: uuid.UUID) -> list[str]:
    members = list(
        await session.scalars(
            select(Membership.user_id).where(Membership.workspace_id == workspace_id)
        )
    )
    return sorted(str(u) for u in await ctx.hub.presence.online(members))


# --- resume ---------------------------------------------------------------------------------


async def resume(ctx: Session, since: int, ref: Ref) -> None:
    """Replay the events after ``since`` on this socket's topics, then go live: live
    events are held while the replay runs and released after it, minus what it covered.
    """
    conn = ctx.conn
    if conn.resuming:
        raise Conflict("A resume is already running on this socket")
    wanted = [*conn.topics, topics.user(conn.user_id)]
    limit = ctx.settings.ws_replay_limit
    conn.hold_live()
    replayed = 0
    try:
        async with unit_of_work(ctx.state, write=False) as session:
            latest = await latest_seq(session)
            backlog = await session.scalar(
                select(func.count()).select_from(
                    select(Event.id)
                    .where(Event.seq > since, Event.topic.in_(wanted))
                    .limit(limit + 1)
                    .subquery()
                )
            )
        if since > latest:
            raise ValidationFailed(
                "The cursor is ahead of the event log",
                details=[{"loc": ["since"], "msg": f"the latest event is {latest}"}],
            )
        if (backlog or 0) > limit:
            raise FrameError(
                "resync_required",
                "Too much was missed to replay; reload, then resume from the cursor",
                details={"cursor": latest, "replay_limit": limit},
            )
        # Replay only what this process's hub has already handled: it has applied every
        # access change up to there, and anything later reaches the socket live (held).
        if not ctx.hub.started:
            await ctx.hub.start()
        until = ctx.hub.handled_seq
        cursor = since
        while cursor < until:
            async with unit_of_work(ctx.state, write=False) as session:
                page = await read_events(session, wanted, cursor, _REPLAY_PAGE, until=until)
            for event in page:
                cursor = event.id
                if event.topic not in conn.topics and event.topic != wanted[-1]:
                    continue  # access to it was revoked meanwhile
                frame = event_frame(event.model_dump_json())
                replayed += await conn.push_replayed(event.id, frame)
                if conn.closed.is_set():
                    return
            if len(page) < _REPLAY_PAGE:
                break
        conn.push(ack(ref, {"replayed": replayed, "cursor": conn.last_seq}))
    finally:
        conn.release_live()


# --- chat -----------------------------------------------------------------------------------


async def _caller(session: Any, conn: Connection) -> Caller:
    user = await session.get(User, conn.user_id)
    if user is None or not user.is_active:
        conn.close(4401, "account deactivated")
        raise NotFound("Account not found")
    return Caller.acting_as(user)


async def send(ctx: Session, frame: Send) -> Any:
    """``message.send``: the chat service, exactly as ``POST /api/channels/{cid}/messages``."""
    data = MessageCreate.model_validate(
        frame.model_dump(include={"content", "parent_id", "client_msg_id"})
    )
    async with unit_of_work(ctx.state, write=True) as session:
        caller = await _caller(session, ctx.conn)
        access = await channel_access(session, ctx.state.role_cache, caller.id, frame.channel_id)
        message, _created = await post_message(session, ctx.state.chat, caller, access, data)
    return message.model_dump(mode="json")


async def typing(ctx: Session, channel_id: uuid.UUID) -> None:
    """Tell the channel's other subscribers the caller is typing (not stored)."""
    async with unit_of_work(ctx.state, write=False) as session:
        access = await channel_access(session, ctx.state.role_cache, ctx.conn.user_id, channel_id)
    access.require_post()
    now = time.monotonic()
    if now - ctx.typing_at.get(channel_id, 0.0) < _TYPING_EVERY:
        return None
    ctx.typing_at[channel_id] = now
    frame = json.dumps(
        {"type": "typing", "channel_id": str(channel_id), "user_id": str(ctx.conn.user_id)}
    )
    route = Route(topic=topics.channel(channel_id), exclude_user=str(ctx.conn.user_id))
    await ctx.hub.fanout.ephemeral(route, frame)
    return None


# --- calls ----------------------------------------------------------------------------------


async def join_call(ctx: Session, channel_id: uuid.UUID) -> dict[str, Any]:
    """Join the call of a voice channel or DM (posting rights needed)."""
    async with unit_of_work(ctx.state, write=False) as session:
        access = await channel_access(session, ctx.state.role_cache, ctx.conn.user_id, channel_id)
    access.require_post()
    if access.channel.kind not in (ChannelKind.voice, ChannelKind.dm):
        raise FrameError("not_a_call_channel", "Calls happen in voice channels and DMs", 422)
    user_ids = await ctx.hub.calls.join(channel_id, ctx.conn.user_id, ctx.conn.id)
    ctx.conn.calls[channel_id] = access.channel.workspace_id
    await ctx.hub.broadcast_participants(channel_id, user_ids)
    return {"channel_id": str(channel_id), "user_ids": user_ids}


async def leave_call(ctx: Session, channel_id: uuid.UUID) -> dict[str, Any]:
    if channel_id not in ctx.conn.calls:
        raise FrameError("not_in_call", "You are not in this call")
    user_ids = await ctx.hub.leave_call(ctx.conn, channel_id)
    return {"channel_id": str(channel_id), "user_ids": user_ids or []}


async def signal(ctx: Session, frame: Signal) -> None:
    """Relay a WebRTC offer/answer/ICE candidate to one participant of the same call."""
    if frame.channel_id not in ctx.conn.calls:
        raise FrameError("not_in_call", "Join the call before signaling")
    participants = await ctx.hub.calls.participants(frame.channel_id)
    if participants.get(str(ctx.conn.user_id)) != ctx.conn.id:
        # This user is in the call through another socket (or dropped out): not this one.
        ctx.conn.calls.pop(frame.channel_id, None)
        raise FrameError("not_in_call", "Join the call on this socket before signaling")
    target = str(frame.target_user_id)
    if target not in participants or target == str(ctx.conn.user_id):
        raise FrameError("not_in_call", "That user is not in this call")
    relayed = json.dumps(
        {
            "type": "call.signal",
            "channel_id": str(frame.channel_id),
            "sender_user_id": str(ctx.conn.user_id),
            "signal": frame.signal,
        }
    )
    await ctx.hub.fanout.ephemeral(
        Route(user_id=target, call_channel=str(frame.channel_id)), relayed
    )
    return None
