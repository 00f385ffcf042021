"""The connection hub of one server process: who is subscribed to what, and fan-out.

Delivery never waits on a socket: an event is serialised once (by the fan-out) and the
same text is queued on every subscribed connection; a connection whose queue is full is
closed (see :mod:`huddle.realtime.connection`).

Permissions are checked when a socket subscribes. Events that change who may read
what (a member removed or demoted, a grant or team change, a project made private, a
private channel's member removed, an account deactivated) make the hub re-check the
affected sockets' subscriptions against the database — before it delivers that event
or any later one — so a removed member stops receiving at once.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import State

from huddle.access.channels import channel_access
from huddle.access.service import bypass_cache
from huddle.access.topics import can_read_topic
from huddle.core.db import unit_of_work
from huddle.core.errors import AppError
from huddle.events import topics
from huddle.events.models import Event
from huddle.events.schemas import Envelope
from huddle.events.service import envelope, latest_seq
from huddle.realtime.connection import Connection, event_frame
from huddle.realtime.fanout import Fanout, Route
from huddle.realtime.state import Calls, Presence

log = logging.getLogger("huddle.realtime")

CLOSE_ACCOUNT_GONE = 4401

# Event type → where in its data the affected user is (None: anyone in the workspace).
ACCESS_EVENTS: dict[str, tuple[str, ...] | None] = {
    "member.removed": ("user", "id"),
    "member.role_changed": ("user", "id"),
    "team.member_added": ("user", "id"),
    "team.member_removed": ("user", "id"),
    "team.deleted": None,
    "project.permission_set": ("user_id",),
    "project.permission_removed": ("user_id",),
    "project.updated": None,
    "channel.member_removed": ("user_id",),
}


_BACKFILL_LIMIT = 10_000
_ACCOUNT_EVENTS = ("user.updated", "user.deleted", "member.added")


def _dig(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = data
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


class Hub:
    def __init__(self, state: State, fanout: Fanout, presence: Presence, calls: Calls) -> None:
        self.state = state
        self.fanout = fanout
        self.presence = presence
        self.calls = calls
        self._by_topic: dict[str, set[Connection]] = defaultdict(set)
        self._by_user: dict[uuid.UUID, set[Connection]] = defaultdict(set)
        # Bumped (synchronously) whenever access in a workspace changes; a subscription
        # checked under an older epoch is checked again.
        self.epochs: dict[uuid.UUID, int] = defaultdict(int)
        # The highest seq this hub has handled (access changes applied, delivered): a
        # resume replays up to here; later events reach the socket live.
        self.handled_seq = 0
        self.started = False

    async def start(self) -> None:
        """Everything published before this process started is history it need not
        handle: the database already reflects those access changes. (With the database
        down at startup this is retried by the first resume; /ready reports it.)"""
        try:
            async with unit_of_work(self.state, write=False) as session:
                published = await latest_seq(session, published=True)
        except Exception:
            log.warning("could not read the event log at startup; will retry")
            return
        self.handled_seq = max(self.handled_seq, published)
        self.started = True

    # --- registry -----------------------------------------------------------------------

    @property
    def connection_count(self) -> int:
        return sum(len(c) for c in self._by_user.values())

    async def add(self, conn: Connection) -> None:
        self._by_user[conn.user_id].add(conn)
        self._by_topic[topics.user(conn.user_id)].add(conn)
        if await self.presence.connect(conn.user_id, conn.id):
            await self._announce(conn, "online")

    async def remove(self, conn: Connection) -> None:
        """Forget a socket; never raises (each step is independent)."""
        for topic in list(conn.topics):
            self.unsubscribe(conn, topic)
        self._discard(self._by_topic, topics.user(conn.user_id), conn)
        self._discard(self._by_user, conn.user_id, conn)
        for channel_id in list(conn.calls):
            await self.leave_call(conn, channel_id)
        try:
            if await self.presence.disconnect(conn.user_id, conn.id):
                await self._announce(conn, "offline")
        except Exception:
            log.exception("presence update failed for %s", conn.user_id)

    @staticmethod
    def _discard(index: dict[Any, set[Connection]], key: Any, conn: Connection) -> None:
        bucket = index.get(key)
        if bucket is not None:
            bucket.discard(conn)
            if not bucket:
                del index[key]

    def subscribe(self, conn: Connection, topic: str, workspace_id: uuid.UUID | None) -> None:
        conn.topics[topic] = workspace_id
        self._by_topic[topic].add(conn)

    def unsubscribe(self, conn: Connection, topic: str) -> None:
        conn.topics.pop(topic, None)
        if topic != topics.user(conn.user_id):
            self._discard(self._by_topic, topic, conn)

    # --- events ---------------------------------------------------------------------------

    async def deliver_event(
        self, seq: int, topic: str, event_type: str, raw: str, event: Envelope | None = None
    ) -> None:
        """Hand one published event to every local socket subscribed to its topic.

        ``seq`` has no gaps, so a jump means this hub missed events (a failed relay to
        Redis, a trimmed stream): they are read back from the log and handled first.
        """
        if self.handled_seq and seq > self.handled_seq + 1:
            await self._backfill(self.handled_seq, seq)
        if event_type in ACCESS_EVENTS or event_type in _ACCOUNT_EVENTS:
            envelope = event or Envelope.model_validate_json(raw)
            await self._access_changed(envelope)
        subscribers = self._by_topic.get(topic)
        if subscribers:
            frame = event_frame(raw)
            for conn in list(subscribers):
                conn.push_event(seq, frame)
        self.handled_seq = max(self.handled_seq, seq)

    async def _backfill(self, after: int, before: int) -> None:
        log.warning("hub missed events %s..%s; reading them from the log", after + 1, before - 1)
        try:
            async with unit_of_work(self.state, write=False) as session:
                rows = list(
                    await session.scalars(
                        select(Event)
                        .where(Event.seq > after, Event.seq < before)
                        .order_by(Event.seq)
                        .limit(_BACKFILL_LIMIT)
                    )
                )
        except Exception:
            log.exception("reading missed events failed")
            return
        for row in rows:
            missed = envelope(row)
            await self.deliver_event(
                missed.id, missed.topic, missed.type, missed.model_dump_json(), missed
            )

    async def _access_changed(self, event: Envelope) -> None:
        if event.type in ("member.added", "member.removed") and event.workspace_id:
            # Presence is announced in the workspaces a user belongs to now.
            user = _dig(event.data, ("user", "id"))
            for conn in self._by_user.get(uuid.UUID(str(user)), ()) if user else ():
                if event.type == "member.added":
                    conn.workspaces.add(event.workspace_id)
                else:
                    conn.workspaces.discard(event.workspace_id)
            if event.type == "member.added":
                return
        if event.type in ("user.updated", "user.deleted"):
            if event.type == "user.deleted" or not event.data.get("is_active", True):
                for conn in list(self._by_user.get(event.subject_id or uuid.UUID(int=0), ())):
                    conn.close(CLOSE_ACCOUNT_GONE, "account deactivated")
            return
        workspace_id = event.workspace_id
        if workspace_id is None:
            return
        if event.type == "project.updated" and not event.data.get("is_private"):
            return  # a public project: nobody lost access to it
        self.epochs[workspace_id] += 1
        path = ACCESS_EVENTS[event.type]
        user = _dig(event.data, path) if path else None
        if user is not None:
            affected = list(self._by_user.get(uuid.UUID(str(user)), ()))
        else:
            affected = [
                c
                for conns in self._by_user.values()
                for c in conns
                if workspace_id in c.topics.values()
            ]
        if affected:
            await self.revalidate(affected, workspace_id)

    async def revalidate(self, conns: list[Connection], workspace_id: uuid.UUID) -> None:
        """Drop the subscriptions in ``workspace_id`` these sockets may no longer read."""
        try:
            async with unit_of_work(self.state, write=False) as session:
                bypass_cache(session, workspace_id)
                for conn in conns:
                    await self._recheck(session, conn, workspace_id)
        except Exception:
            # Fail closed: when the check cannot run, drop the workspace's subscriptions.
            log.exception("re-checking subscriptions failed; dropping them")
            for conn in conns:
                for topic, ws in list(conn.topics.items()):
                    if ws == workspace_id:
                        self._revoke(conn, topic)

    async def _recheck(
        self, session: AsyncSession, conn: Connection, workspace_id: uuid.UUID
    ) -> None:
        for topic, ws in list(conn.topics.items()):
            if ws != workspace_id:
                continue
            if not await can_read_topic(session, self.state.role_cache, conn.user_id, topic):
                self._revoke(conn, topic)
        for channel_id, ws in list(conn.calls.items()):
            if ws != workspace_id:
                continue
            try:
                access = await channel_access(
                    session, self.state.role_cache, conn.user_id, channel_id
                )
                access.require_post()
            except AppError:
                await self.leave_call(conn, channel_id)

    def _revoke(self, conn: Connection, topic: str) -> None:
        self.unsubscribe(conn, topic)
        conn.push(json.dumps({"type": "unsubscribed", "topic": topic, "reason": "access_revoked"}))

    # --- ephemeral frames -----------------------------------------------------------------

    def deliver_ephemeral(self, route: Route, frame: str) -> None:
        """Typing, presence and call frames: to a topic's subscribers or one user's call."""
        if route.topic is not None:
            for conn in list(self._by_topic.get(route.topic, ())):
                if str(conn.user_id) != route.exclude_user:
                    conn.push(frame)
        elif route.user_id is not None:
            for conn in list(self._by_user.get(uuid.UUID(route.user_id), ())):
                if route.call_channel is None or uuid.UUID(route.call_channel) in conn.calls:
                    conn.push(frame)

    async def _announce(self, conn: Connection, status: str) -> None:
        for workspace_id in conn.workspaces:
            frame = json.dumps(
                {
                    "type": "presence",
                    "workspace_id": str(workspace_id),
                    "user_id": str(conn.user_id),
                    "status": status,
                }
            )
            await self.fanout.ephemeral(Route(topic=topics.workspace(workspace_id)), frame)

    # --- calls ----------------------------------------------------------------------------

    async def broadcast_participants(self, channel_id: uuid.UUID, user_ids: list[str]) -> None:
        frame = json.dumps(
            {"type": "call.participants", "channel_id": str(channel_id), "user_ids": user_ids}
        )
        await self.fanout.ephemeral(Route(topic=topics.channel(channel_id)), frame)

    async def leave_call(self, conn: Connection, channel_id: uuid.UUID) -> list[str] | None:
        conn.calls.pop(channel_id, None)
        try:
            remaining = await self.calls.leave(channel_id, conn.user_id, conn.id)
            if remaining is not None:
                await self.broadcast_participants(channel_id, remaining)
        except Exception:
            log.exception("leaving call %s failed", channel_id)
            return None
        return remaining
