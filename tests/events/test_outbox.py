"""The event outbox: one event per change, visible to exactly those who may read its topic."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select, text

from huddle.core.db import Database
from huddle.events.bus import MemoryBus
from huddle.events.dispatcher import Dispatcher
from huddle.events.models import Event
from huddle.events.schemas import Actor
from huddle.events.service import record
from huddle.workspaces.schemas import WorkspaceData
from tests.helpers import assert_error
from tests.world import build_world, events


def _types(items):
    return [e["type"] for e in items]


async def test_each_change_yields_exactly_one_event_visible_to_members_only(client, app):
    world = await build_world(client, app)
    before = await events(world, "admin")
    cursor = before[-1]["id"]
    await world.ok("admin", "PATCH", "/api/workspaces/{W}", json={"name": "Acme 2"})
    after = await events(world, "member", since=cursor)
    assert _types(after) == ["workspace.updated"]
    event = after[0]
    assert event["id"] > cursor
    assert event["topic"] == f"workspace:{world.ids['W']}"
    assert event["workspace_id"] == world.ids["W"] == event["subject_id"]
    assert event["actor"] == {"kind": "user", "id": world.ids["admin_id"]}
    assert event["data"]["name"] == "Acme 2"
    assert set(event) == {
        "id",
        "type",
        "topic",
        "workspace_id",
        "subject_id",
        "actor",
        "data",
        "created_at",
    }
    # Outsiders and superusers see none of W's events.
    for role in ("outsider", "superuser"):
        assert all(e["workspace_id"] != world.ids["W"] for e in await events(world, role))


async def test_world_history_is_complete_and_in_order(client, app):
    world = await build_world(client, app)
    admin_view = await events(world, "admin")
    seqs = [e["id"] for e in admin_view]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    own = [e for e in admin_view if e["workspace_id"] == world.ids["W"]]
    assert _types(own) == [
        "workspace.created",
        "member.added",
        "member.added",
        "member.added",
        "member.added",
        "team.created",
        "team.member_added",
        "project.created",
        "project.created",
        "project.permission_set",
        "task.created",
        "task.created",
        "invitation.created",
    ]


async def test_topics_limit_who_reads_what(client, app):
    world = await build_world(client, app)
    member_view = _types(await events(world, "member"))
    admin_view = _types(await events(world, "admin"))
    # The invitation is for admins only; the private project Q exists only for its readers.
    assert "invitation.created" in admin_view and "invitation.created" not in member_view
    assert admin_view.count("project.created") == 2 and member_view.count("project.created") == 1
    q_topic = "project:" + world.ids["Q"]
    q_events = await events(world, "admin", topic=q_topic)
    assert [e["type"] for e in q_events] == ["project.created", "task.created"]
    assert {e["topic"] for e in q_events} == {q_topic}
    response = await world.call("member", "GET", "/api/events", params={"topic": q_topic})
    assert_error(response, 404, "not_found")
    # Once granted, the member reads the private project's topic (and its history).
    await world.ok(
        "admin", "PUT", "/api/projects/{Q}/permissions/{member_id}", json={"role": "viewer"}
    )
    granted = await events(world, "member", topic=q_topic)
    assert _types(granted) == ["project.created", "task.created", "project.permission_set"]


async def test_rolled_back_change_leaves_no_event(client, app):
    world = await build_world(client, app)
    cursor = (await events(world, "admin"))[-1]["id"]
    # The last admin cannot demote themselves: 409, and nothing is recorded.
    response = await world.call(
        "admin", "PATCH", "/api/workspaces/{W}/members/{admin_id}", json={"role": "member"}
    )
    assert_error(response, 409, "conflict")
    assert await events(world, "admin", since=cursor) == []
    async with app.state.db.read_session() as session:
        assert (await session.scalar(select(Event).where(Event.seq.is_(None)))) is None


async def test_failed_commit_leaves_no_event(client, app, monkeypatch):
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.ext.asyncio import AsyncSession

    world = await build_world(client, app)
    cursor = (await events(world, "admin"))[-1]["id"]
    real = AsyncSession.commit

    async def failing(self):
        raise OperationalError("COMMIT", {}, Exception("disk full"))

    monkeypatch.setattr(AsyncSession, "commit", failing)
    response = await world.call("admin", "PATCH", "/api/workspaces/{W}", json={"name": "Lost"})
    monkeypatch.setattr(AsyncSession, "commit", real)
    assert_error(response, 500, "internal_error")
    assert await events(world, "admin", since=cursor) == []


async def test_deleted_workspace_history_stays_readable_by_its_members(client, app):
    world = await build_world(client, app)
    cursor = (await events(world, "member"))[-1]["id"]
    await world.ok("admin", "DELETE", "/api/workspaces/{W}", 204)
    assert_error(await world.call("member", "GET", "/api/workspaces/{W}"), 404, "not_found")
    deleted = await events(world, "member", since=cursor)
    assert _types(deleted) == ["workspace.deleted"]
    listed = await world.ok("member", "GET", "/api/workspaces")
    assert listed["items"] == []


async def test_event_feed_pages_with_since(client, app):
    world = await build_world(client, app)
    everything = await events(world, "admin", limit=500)
    page = await world.ok("admin", "GET", "/api/events", params={"limit": 3})
    assert [e["id"] for e in page["items"]] == [e["id"] for e in everything[:3]]
    assert page["next_cursor"] == str(everything[2]["id"])
    rest = await events(world, "admin", since=int(page["next_cursor"]), limit=500)
    assert [e["id"] for e in page["items"] + rest] == [e["id"] for e in everything]
    for bad in ({"since": -1}, {"since": "x"}, {"limit": 0}, {"limit": 501}):
        assert_error(
            await world.call("admin", "GET", "/api/events", params=bad), 422, "validation_error"
        )


async def test_bus_receives_events_in_seq_order(client, app):
    received = []

    async def subscriber(envelope):
        received.append(envelope.id)

    unsubscribe = app.state.bus.subscribe(subscriber)
    try:
        world = await build_world(client, app)
        await app.state.dispatcher.flush()
    finally:
        unsubscribe()
    assert received == sorted(received) and len(received) >= 17
    assert received == list(range(received[0], received[0] + len(received)))  # gapless
    del world


async def _record_workspace_event(session, name: str) -> Event:
    import uuid

    from huddle.core.time import utcnow

    workspace_id = uuid.uuid4()
    return await record(
        session,
        "workspace.updated",
        topic=f"workspace:{workspace_id}",
        actor=Actor.system(),
        data=WorkspaceData(
            id=workspace_id, name=name, slug=name, owner_id=None, created_at=utcnow()
        ),
        workspace_id=workspace_id,
        subject_id=workspace_id,
    )


async def test_out_of_order_commits_are_never_skipped_by_a_resuming_reader(settings, postgres_only):
    """The later-inserted transaction commits first; a reader resuming by seq misses nothing."""
    db = Database(settings)
    bus = MemoryBus()
    dispatcher = Dispatcher(db, bus, poll_interval=60)
    early = db.write_session()
    try:
        early_event = await _record_workspace_event(early, "first-inserted")
        await early.flush()  # id assigned now; not committed yet
        early_id = early_event.id
        async with db.write_session() as late:
            await _record_workspace_event(late, "second-inserted")
            await late.commit()

        assert await dispatcher.flush() == 1
        async with db.read_session() as session:
            seen = list(
                await session.scalars(select(Event).where(Event.seq > 0).order_by(Event.seq))
            )
        assert [e.data["name"] for e in seen] == ["second-inserted"]
        cursor = seen[-1].seq
        assert seen[-1].id > early_id  # an id cursor would now skip the early event

        await early.commit()
        await early.close()
        assert await dispatcher.flush() == 1
        async with db.read_session() as session:
            resumed = list(
                await session.scalars(select(Event).where(Event.seq > cursor).order_by(Event.seq))
            )
        assert [e.data["name"] for e in resumed] == ["first-inserted"]
        assert resumed[0].seq == cursor + 1
    finally:
        await early.close()
        await dispatcher.stop()
        await db.dispose()


async def test_one_leader_at_a_time_and_failover(settings):
    """Two dispatchers (an advisory lock on PostgreSQL, a file lock on SQLite): one
    leads; when it stops, the other takes over."""
    db_a, db_b = Database(settings), Database(settings)
    first = Dispatcher(db_a, MemoryBus(), poll_interval=0.05)
    second = Dispatcher(db_b, MemoryBus(), poll_interval=0.05)
    try:
        first.start()
        await _wait_for(lambda: first.is_leader)
        second.start()
        await asyncio.sleep(0.3)
        assert first.is_leader and not second.is_leader
        assert await second.dispatch_pending() == 0
        await first.stop()
        await _wait_for(lambda: second.is_leader)
        async with db_b.write_session() as session:
            await _record_workspace_event(session, "after-failover")
            await session.commit()
        await _wait_for_published(db_b)
    finally:
        await first.stop()
        await second.stop()
        await db_a.dispose()
        await db_b.dispose()


async def _wait_for(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def _wait_for_published(db: Database, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            async with db.read_session() as session:
                pending = await session.scalar(select(Event.id).where(Event.published_at.is_(None)))
            if pending is None:
                return
            await asyncio.sleep(0.05)


async def test_republishes_events_numbered_but_not_marked(settings):
    """A crash between numbering and marking: the next pass publishes those events again."""
    db = Database(settings)
    published = []
    bus = MemoryBus()

    async def collect(envelope):
        published.append(envelope.id)

    bus.subscribe(collect)
    dispatcher = Dispatcher(db, bus, poll_interval=60)
    try:
        async with db.write_session() as session:
            await _record_workspace_event(session, "crashy")
            await session.commit()
        await dispatcher.flush()
        async with db.write_session() as session:
            await session.execute(text("UPDATE events SET published_at = NULL"))
            await session.commit()
        await dispatcher.flush()
        assert len(published) == 2 and published[0] == published[1]  # same seq twice: dedupable
    finally:
        await dispatcher.stop()
        await db.dispose()


async def test_a_numbered_event_goes_out_before_anything_newer(settings):
    """An event numbered but refused by the bus must be published before any event is
    numbered after it, even when older unnumbered rows fill the batch: a stream keyed
    by seq would otherwise take the older seq for a duplicate and drop it."""
    db = Database(settings)
    published = []
    bus = MemoryBus()

    async def collect(envelope):
        published.append(envelope.id)

    bus.subscribe(collect)
    dispatcher = Dispatcher(db, bus, poll_interval=60, batch=1)
    try:
        for name in ("late", "numbered"):
            async with db.write_session() as session:
                await _record_workspace_event(session, name)
                await session.commit()
        async with db.write_session() as session:  # the second row got seq 1, unpublished
            await session.execute(
                text("UPDATE events SET seq = 1 WHERE id = (SELECT MAX(id) FROM events)")
            )
            await session.commit()
        await dispatcher.flush()
        assert published == [1, 2]
    finally:
        await dispatcher.stop()
        await db.dispose()


@pytest.mark.parametrize("event_type", ["nope.created", "workspace.created"])
async def test_record_refuses_unknown_types_and_wrong_data(settings, event_type):
    from huddle.projects.schemas import GrantRead

    db = Database(settings)
    try:
        async with db.write_session() as session:
            with pytest.raises((ValueError, TypeError)):
                await record(
                    session,
                    event_type,
                    topic="workspace:x",
                    actor=Actor.system(),
                    data=GrantRead.model_construct(),
                    workspace_id=None,
                    subject_id=None,
                )
    finally:
        await db.dispose()
