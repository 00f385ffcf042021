"""Messages: history, threads, edits, deletes, reactions, mentions, idempotency, limits."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import pytest
from sqlalchemy import func, select

from huddle.chat.models import Message
from tests.helpers import assert_error, background
from tests.world import build_world, events


async def post(world, role, channel, content, expect=201, **extra):
    return await world.ok(
        role,
        "POST",
        f"/api/channels/{{{channel}}}/messages",
        expect,
        json={"content": content, **extra},
    )


async def history(world, role, channel, **params):
    return (await world.ok(role, "GET", f"/api/channels/{{{channel}}}/messages", params=params))[
        "items"
    ]


async def count_messages(app) -> int:
    async with app.state.db.read_session() as session:
        return int(await session.scalar(select(func.count()).select_from(Message)) or 0)


async def test_two_users_chat_and_every_change_is_an_event_for_members_only(client, app):
    world = await build_world(client, app, chat=True)
    hello = await post(world, "member", "PC", "hello @admin")
    reply = await post(world, "admin", "PC", "hi back", parent_id=hello["id"])
    await world.ok("admin", "PUT", f"/api/messages/{hello['id']}/reactions/{quote('🎉')}")
    await world.ok("member", "PATCH", f"/api/messages/{hello['id']}", json={"content": "hello all"})
    await world.ok("admin", "DELETE", f"/api/messages/{reply['id']}", 204)
    feed = await events(world, "viewer", topic="channel:{PC}")
    mine = [(e["type"], e["subject_id"]) for e in feed if e["type"] != "channel.created"]
    assert mine == [
        ("message.created", hello["id"]),
        ("message.created", reply["id"]),
        ("reaction.added", hello["id"]),
        ("message.updated", hello["id"]),
        ("message.deleted", reply["id"]),
    ]
    reaction = next(e for e in feed if e["type"] == "reaction.added")
    assert reaction["data"] == {
        "message_id": hello["id"],
        "channel_id": world.ids["PC"],
        "user_id": world.ids["admin_id"],
        "emoji": "🎉",
    }
    updated = next(e for e in feed if e["type"] == "message.updated")
    assert updated["data"]["content"] == "hello all" and updated["data"]["edited_at"]
    # The mention of @admin reached admin, and nobody else reads PC's events.
    mentions = [
        e for e in await events(world, "admin", topic="user:{admin_id}") if e["type"] == "mention"
    ]
    assert [e["data"] for e in mentions] == [
        {
            "message_id": hello["id"],
            "channel_id": world.ids["PC"],
            "user_id": world.ids["admin_id"],
            "author_id": world.ids["member_id"],
        }
    ]
    for role in ("bystander", "teammate", "outsider", "superuser"):
        leaked = [
            e for e in await events(world, role) if e["subject_id"] in (hello["id"], reply["id"])
        ]
        assert leaked == [], role


async def test_history_is_newest_first_and_pages_without_gaps(client, app):
    world = await build_world(client, app, chat=True)
    posted = [(await post(world, "member", "CH", f"m{n}"))["id"] for n in range(7)]
    newest_first = [world.ids["M"], *posted][::-1]
    assert [m["id"] for m in await history(world, "viewer", "CH")] == newest_first
    seen, cursor = [], None
    while True:
        page = await world.ok(
            "viewer",
            "GET",
            "/api/channels/{CH}/messages",
            params={"limit": 3, **({"cursor": cursor} if cursor else {})},
        )
        seen += [m["id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == newest_first
    older = await history(world, "viewer", "CH", before=posted[3], limit=2)
    assert [m["id"] for m in older] == [posted[2], posted[1]]
    assert_error(
        await world.call("viewer", "GET", "/api/channels/{CH}/messages", params={"cursor": "!!"}),
        422,
        "validation_error",
    )


async def test_threads(client, app):
    world = await build_world(client, app, chat=True)
    root = world.ids["M"]
    replies = [(await post(world, "admin", "CH", f"r{n}", parent_id=root))["id"] for n in range(3)]
    top = await history(world, "member", "CH")
    assert [m["id"] for m in top] == [root]  # replies stay out of the top level
    assert top[0]["reply_count"] == 3 and top[0]["last_reply_at"]
    thread = await history(world, "member", "CH", parent_id=root)
    assert [m["id"] for m in thread] == replies[::-1]
    assert all(m["parent_id"] == root for m in thread)
    # Replies go to the root only, in the same channel, and not to a deleted root.
    for parent, label in ((replies[0], "reply"), (world.ids["PM2"], "other channel")):
        response = await world.call(
            "member",
            "POST",
            "/api/channels/{CH}/messages",
            json={"content": "x", "parent_id": parent},
        )
        assert_error(response, 422, "validation_error"), label
    await world.ok("admin", "DELETE", f"/api/messages/{replies[1]}", 204)
    assert (await world.ok("member", "GET", f"/api/messages/{root}"))["reply_count"] == 2
    # Deleting the latest reply moves last_reply_at back to the latest one left.
    first = await world.ok("member", "GET", f"/api/messages/{replies[0]}")
    await world.ok("admin", "DELETE", f"/api/messages/{replies[2]}", 204)
    shown = await world.ok("member", "GET", f"/api/messages/{root}")
    assert shown["reply_count"] == 1 and shown["last_reply_at"] == first["created_at"]
    await world.ok("admin", "DELETE", f"/api/messages/{replies[0]}", 204)
    shown = await world.ok("member", "GET", f"/api/messages/{root}")
    assert shown["reply_count"] == 0 and shown["last_reply_at"] is None
    await world.ok("member", "DELETE", f"/api/messages/{root}", 204)
    late = await world.call(
        "member", "POST", "/api/channels/{CH}/messages", json={"content": "x", "parent_id": root}
    )
    assert_error(late, 422, "validation_error")
    unknown = await world.call(
        "member", "GET", "/api/channels/{CH}/messages", params={"parent_id": world.ids["PM2"]}
    )
    assert_error(unknown, 404, "not_found")


async def test_edit_rules(client, app):
    world = await build_world(client, app, chat=True)
    path = "/api/messages/{M}"
    edited = await world.ok("member", "PATCH", path, json={"content": "hello again"})
    assert edited["content"] == "hello again" and edited["edited_at"] is not None
    assert_error(await world.call("admin", "PATCH", path, json={"content": "x"}), 403, "forbidden")
    # A member demoted to viewer can no longer edit their own message.
    await world.ok(
        "admin", "PATCH", "/api/workspaces/{W}/members/{member_id}", json={"role": "viewer"}
    )
    assert_error(await world.call("member", "PATCH", path, json={"content": "x"}), 403, "forbidden")
    await world.ok(
        "admin", "PATCH", "/api/workspaces/{W}/members/{member_id}", json={"role": "member"}
    )
    await world.ok("member", "DELETE", path, 204)
    assert_error(await world.call("member", "PATCH", path, json={"content": "x"}), 409, "conflict")


@pytest.mark.parametrize(
    "body",
    [
        {"content": ""},
        {"content": "   \n "},
        {"content": "x" * 10_001},
        {"content": "nul\u0000"},
        {"content": "x", "parent_id": "nope"},
        {"content": "x", "client_msg_id": ""},
        {"content": "x", "client_msg_id": "c" * 101},
        {"content": 5},
        {"text": "x"},
    ],
)
async def test_bad_message_bodies_are_422_and_store_nothing(client, app, body):
    world = await build_world(client, app, chat=True)
    before = await count_messages(app)
    response = await world.call("member", "POST", "/api/channels/{CH}/messages", json=body)
    assert_error(response, 422, "validation_error")
    assert await count_messages(app) == before


async def test_longest_message_is_accepted(client, app):
    world = await build_world(client, app, chat=True)
    long = await post(world, "member", "CH", "é" * 10_000)
    assert len(long["content"]) == 10_000


async def test_delete_leaves_a_tombstone_and_admins_delete_others(client, app):
    world = await build_world(client, app, chat=True)
    await world.ok("viewer", "GET", "/api/messages/{M}")
    await world.ok("admin", "PUT", "/api/messages/{M}/reactions/thumbsup")
    assert_error(await world.call("bystander", "DELETE", "/api/messages/{M}"), 403, "forbidden")
    await world.ok("admin", "DELETE", "/api/messages/{M}", 204)
    tomb = (await history(world, "member", "CH"))[0]
    assert tomb["id"] == world.ids["M"] and tomb["content"] == "" and tomb["deleted_at"]
    assert tomb["reactions"] == [] and tomb["mentions"] == []
    await world.ok("admin", "DELETE", "/api/messages/{M}", 204)  # twice: no-op
    deleted = [
        e
        for e in await events(world, "member", topic="channel:{CH}")
        if e["type"] == "message.deleted"
    ]
    assert len(deleted) == 1 and deleted[0]["data"]["content"] == ""
    assert_error(
        await world.call("member", "PUT", "/api/messages/{M}/reactions/ok"), 409, "conflict"
    )


async def test_reactions_are_counted_per_emoji_with_me(client, app):
    world = await build_world(client, app, chat=True)
    thumbs = quote("👍🏽")
    await world.ok("member", "PUT", f"/api/messages/{{M}}/reactions/{thumbs}")
    again = await world.ok("member", "PUT", f"/api/messages/{{M}}/reactions/{thumbs}")
    assert again["reactions"] == [{"emoji": "👍🏽", "count": 1, "me": True}]
    await world.ok("admin", "PUT", f"/api/messages/{{M}}/reactions/{thumbs}")
    admin_view = await world.ok("admin", "PUT", "/api/messages/{M}/reactions/party-parrot")
    assert admin_view["reactions"] == [
        {"emoji": "👍🏽", "count": 2, "me": True},
        {"emoji": "party-parrot", "count": 1, "me": True},
    ]
    member_view = (await history(world, "member", "CH"))[0]["reactions"]
    assert member_view == [
        {"emoji": "👍🏽", "count": 2, "me": True},
        {"emoji": "party-parrot", "count": 1, "me": False},
    ]
    await world.ok("member", "DELETE", f"/api/messages/{{M}}/reactions/{thumbs}", 204)
    await world.ok("member", "DELETE", f"/api/messages/{{M}}/reactions/{thumbs}", 204)
    after = (await world.ok("member", "GET", "/api/messages/{M}"))["reactions"]
    assert after[0] == {"emoji": "👍🏽", "count": 1, "me": False}
    kinds = [
        e["type"]
        for e in await events(world, "viewer", topic="channel:{CH}")
        if e["type"].startswith("reaction")
    ]
    assert kinds == ["reaction.added", "reaction.added", "reaction.added", "reaction.removed"]


@pytest.mark.parametrize("emoji", ["ab cd", "<b>", "Thumbs", quote("👍👍"), "x" * 65, "party%0A"])
async def test_bad_emoji_is_422(client, app, emoji):
    world = await build_world(client, app, chat=True)
    response = await world.call("member", "PUT", f"/api/messages/{{M}}/reactions/{emoji}")
    assert_error(response, 422, "validation_error")


async def test_mentions_reach_readers_only(client, app):
    world = await build_world(client, app, chat=True)
    # In PC (admin, member, viewer): @viewer and team @design (teammate, not in PC),
    # @outsider (not in W), an e-mail address, and the author themself.
    message = await post(
        world, "member", "PC", "ping @viewer, @design! and @outsider / mail bob@member.io @member"
    )
    assert message["mentions"] == [world.ids["viewer_id"]]
    for role, expected in (("viewer", 1), ("teammate", 0), ("outsider", 0), ("member", 0)):
        got = [
            e
            for e in await events(world, role, topic=f"user:{{{role}_id}}")
            if e["type"] == "mention"
        ]
        assert len(got) == expected, role
    # In the public channel the team handle reaches teammate.
    public = await post(world, "admin", "CH", "@Design please look")
    assert public["mentions"] == [world.ids["teammate_id"]]
    # Editing adds a mention: only the newly mentioned get an event.
    await world.ok(
        "admin",
        "PATCH",
        f"/api/messages/{public['id']}",
        json={"content": "@design and @bystander"},
    )
    for role, expected in (("teammate", 1), ("bystander", 1)):
        got = [
            e
            for e in await events(world, role, topic=f"user:{{{role}_id}}")
            if e["type"] == "mention"
        ]
        assert len(got) == expected, role


async def test_client_msg_id_makes_sends_idempotent(client, app):
    world = await build_world(client, app, chat=True)
    first = await post(world, "member", "CH", "once", client_msg_id="abc")
    again = await post(world, "member", "CH", "once", 200, client_msg_id="abc")
    assert again["id"] == first["id"]
    # Per author and channel: another author or channel with the same id is a new message.
    other = await post(world, "admin", "CH", "once", client_msg_id="abc")
    elsewhere = await post(world, "member", "PC", "once", client_msg_id="abc")
    assert len({first["id"], other["id"], elsewhere["id"]}) == 3
    created = [
        e
        for e in await events(world, "member", topic="channel:{CH}")
        if e["subject_id"] == first["id"]
    ]
    assert len(created) == 1


async def test_concurrent_retries_make_one_message(client, app):
    world = await build_world(client, app, chat=True)
    before = await count_messages(app)
    responses = await asyncio.gather(
        *[
            world.call(
                "member",
                "POST",
                "/api/channels/{CH}/messages",
                json={"content": "x", "client_msg_id": "race"},
            )
            for _ in range(6)
        ]
    )
    assert sorted(r.status_code for r in responses) == [200] * 5 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert await count_messages(app) == before + 1


async def test_message_rate_limit(make_settings, start_app):
    from huddle.app import create_app

    app = create_app(make_settings(rate_messages="4/1m"))
    client = await start_app(app)
    world = await build_world(client, app, chat=True)  # member posted 3 messages already
    kept = await post(world, "member", "CH", "fourth", client_msg_id="k")
    limited = await world.call(
        "member", "POST", "/api/channels/{CH}/messages", json={"content": "x"}
    )
    assert_error(limited, 429, "rate_limited")
    assert int(limited.headers["Retry-After"]) > 0
    # A retry of a message that went through is answered, not limited; others may post.
    assert (await post(world, "member", "CH", "fourth", 200, client_msg_id="k"))["id"] == kept["id"]
    await post(world, "admin", "CH", "others are not limited")


async def test_search_follows_messages_posted_edited_and_deleted_over_rest(client, app):
    world = await build_world(client, app, chat=True)

    async def found(role, q):
        page = await world.ok(role, "GET", "/api/workspaces/{W}/search", params={"q": q})
        return [item["id"] for item in page["items"]]

    public = await post(world, "member", "CH", "the quarterly roadmap review")
    private = await post(world, "member", "PC2", "quarterly numbers, keep quiet")
    assert await found("viewer", "quarterly") == [public["id"]]
    assert sorted(await found("member", "quarterly")) == sorted([public["id"], private["id"]])
    assert await found("admin", "quarterly") == [public["id"]]  # sees PC2, cannot read it
    await world.ok("member", "PATCH", f"/api/messages/{public['id']}", json={"content": "budget"})
    assert await found("viewer", "roadmap") == []
    assert await found("viewer", "budget") == [public["id"]]
    await world.ok("member", "DELETE", f"/api/messages/{public['id']}", 204)
    assert await found("viewer", "budget") == []


async def test_concurrent_deletes_count_once(client, app):
    world = await build_world(client, app, chat=True)
    root = world.ids["M"]
    replies = [(await post(world, "member", "CH", f"r{n}", parent_id=root))["id"] for n in range(3)]
    await asyncio.gather(
        *[
            world.call(role, "DELETE", f"/api/messages/{reply}")
            for reply in replies[:2]
            for role in ("member", "admin")
        ],
        world.call("member", "DELETE", f"/api/messages/{root}"),
        world.call("admin", "DELETE", f"/api/messages/{root}"),
    )
    assert (await world.ok("member", "GET", f"/api/messages/{root}"))["reply_count"] == 1
    deleted = [
        e["subject_id"]
        for e in await events(world, "member", topic="channel:{CH}")
        if e["type"] == "message.deleted"
    ]
    assert sorted(deleted) == sorted([*replies[:2], root])


async def test_mention_events_follow_their_message(client, app):
    world = await build_world(client, app, chat=True)
    message = await post(world, "admin", "CH", "@viewer look")
    created = next(
        e
        for e in await events(world, "viewer", topic="channel:{CH}")
        if e["subject_id"] == message["id"]
    )
    mention = next(
        e for e in await events(world, "viewer", topic="user:{viewer_id}") if e["type"] == "mention"
    )
    assert mention["id"] > created["id"]


async def test_a_new_message_is_answered_as_history_shows_it_in_few_statements(client, app):
    """The send answers without reading the new message back (its author is the caller,
    it has no reactions yet, its mentions were just resolved): the answer must be what a
    read gives, and posting stays a small, fixed number of statements."""
    from sqlalchemy import event

    world = await build_world(client, app, chat=True)
    await post(world, "member", "PC", "warm up")  # the role cache and compiled statements
    engine = app.state.db.engine.sync_engine
    seen: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        if not background(statement):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        sent = await post(world, "member", "PC", "plain words")
    finally:
        event.remove(engine, "before_cursor_execute", count)
    # Not counted: transaction control and the background dispatcher's and webhook
    # sender's statements.
    others = ("BEGIN", "FROM events", "UPDATE events", "pg_advisory", "webhook")
    posting = [s for s in seen if not any(o in s for o in others)]
    # user, channel, role (until cached), channel membership (a private channel), the
    # message, its event
    assert len(posting) <= 6, posting
    mentioning = await post(world, "member", "PC", "hey @viewer", client_msg_id="m-1")
    shown = {m["id"]: m for m in await history(world, "member", "PC")}
    assert sent == shown[sent["id"]]
    assert mentioning == shown[mentioning["id"]]
    assert mentioning["mentions"] == [world.ids["viewer_id"]] and mentioning["reactions"] == []
    assert mentioning["author"]["id"] == world.ids["member_id"]
