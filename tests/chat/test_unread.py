"""Read markers, unread and mention counts, and the channel list's statement count."""

from __future__ import annotations

from sqlalchemy import event

from tests.helpers import assert_error, background
from tests.world import build_world, events


async def counts(world, role, channel):
    item = await world.ok(role, "GET", f"/api/channels/{{{channel}}}")
    return item["unread_count"], item["mention_count"]


async def post(world, role, channel, content, **extra):
    return await world.ok(
        role,
        "POST",
        f"/api/channels/{{{channel}}}/messages",
        201,
        json={"content": content, **extra},
    )


async def test_unread_and_mention_counts_follow_posts_and_reads(client, app):
    world = await build_world(client, app, chat=True)
    # CH holds M by member. For viewer that is one unread message, no mention.
    assert await counts(world, "viewer", "CH") == (1, 0)
    assert await counts(world, "member", "CH") == (0, 0)  # own messages never count
    a = await post(world, "admin", "CH", "hey @viewer")
    b = await post(world, "admin", "CH", "plain")
    await post(
        world, "admin", "CH", "in thread @viewer", parent_id=b["id"]
    )  # replies: mention only
    assert await counts(world, "viewer", "CH") == (3, 2)
    state = await world.ok(
        "viewer", "POST", "/api/channels/{CH}/read", json={"message_id": a["id"]}
    )
    assert state == {
        "channel_id": world.ids["CH"],
        "last_read_message_id": a["id"],
        "unread_count": 1,
        "mention_count": 1,
    }
    listed = {
        c["id"]: c
        for c in (await world.ok("viewer", "GET", "/api/workspaces/{W}/channels"))["items"]
    }
    assert listed[world.ids["CH"]]["unread_count"] == 1
    assert listed[world.ids["CH"]]["last_read_message_id"] == a["id"]
    # Marking an older message read again makes later ones unread ("unread from here").
    await world.ok("viewer", "POST", "/api/channels/{CH}/read", json={"message_id": world.ids["M"]})
    assert await counts(world, "viewer", "CH") == (2, 2)
    # Deleting a message takes it out of the counts.
    await world.ok("admin", "DELETE", f"/api/messages/{a['id']}", 204)
    assert await counts(world, "viewer", "CH") == (1, 1)
    # Other devices learn of the read through the user's own topic.
    reads = [
        e
        for e in await events(world, "viewer", topic="user:{viewer_id}")
        if e["type"] == "channel.read"
    ]
    assert [e["data"]["last_read_message_id"] for e in reads] == [a["id"], world.ids["M"]]
    assert [e for e in await events(world, "member") if e["type"] == "channel.read"] == []


async def test_read_marker_needs_a_message_of_that_channel(client, app):
    world = await build_world(client, app, chat=True)
    for message_id in (world.ids["DMM"], world.ids["PM2"], "01a20000-0000-7000-8000-000000000000"):
        response = await world.call(
            "member", "POST", "/api/channels/{CH}/read", json={"message_id": message_id}
        )
        assert_error(response, 422, "validation_error")
    bad = await world.call("member", "POST", "/api/channels/{CH}/read", json={"message_id": "x"})
    assert_error(bad, 422, "validation_error")


async def test_counts_per_channel_in_the_list(client, app):
    world = await build_world(client, app, chat=True)
    await post(world, "bystander", "DM", "@member see this")
    await post(world, "bystander", "PC2", "two")
    items = (await world.ok("member", "GET", "/api/workspaces/{W}/channels"))["items"]
    by_id = {c["id"]: (c["unread_count"], c["mention_count"]) for c in items}
    assert by_id == {
        world.ids["CH"]: (0, 0),
        world.ids["PC"]: (0, 0),
        world.ids["PC2"]: (1, 0),
        world.ids["DM"]: (1, 1),
    }


async def test_channel_list_statement_count_is_constant(client, app, monkeypatch):
    import huddle.access.service as access_service

    monkeypatch.setattr(access_service, "_CLOCK_MARGIN", -3600.0)  # cache roles at once
    world = await build_world(client, app, chat=True)
    engine = app.state.db.engine.sync_engine
    seen: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        # (not the background dispatcher's, webhook sender's and indexer's own queries)
        if statement.startswith("SELECT") and not background(statement):
            seen.append(statement)

    async def statements() -> int:
        await world.ok("member", "GET", "/api/workspaces/{W}/channels")  # warm the role cache
        seen.clear()
        event.listen(engine, "before_cursor_execute", count)
        try:
            await world.ok("member", "GET", "/api/workspaces/{W}/channels")
        finally:
            event.remove(engine, "before_cursor_execute", count)
        return len(seen)

    before = await statements()
    for n in range(12):
        channel = await world.ok(
            "admin",
            "POST",
            "/api/workspaces/{W}/channels",
            201,
            json={
                "name": f"c{n}",
                "is_private": n % 2 == 0,
                "member_ids": [world.ids["member_id"]] if n % 2 == 0 else [],
            },
        )
        await world.ok(
            "admin",
            "POST",
            f"/api/channels/{channel['id']}/messages",
            201,
            json={"content": "@member"},
        )
    after = await statements()
    assert after == before, (before, after)
    assert after <= 8
    items = (await world.ok("member", "GET", "/api/workspaces/{W}/channels"))["items"]
    assert sum(c["mention_count"] for c in items) == 12
