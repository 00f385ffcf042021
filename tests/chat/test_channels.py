"""Channels, private channels, DMs, project channels and channel membership."""

from __future__ import annotations

import pytest

from tests.helpers import assert_error
from tests.world import build_world, events


def ids_of(items):
    return [item["id"] for item in items]


async def channel_list(world, role, **params):
    return (await world.ok(role, "GET", "/api/workspaces/{W}/channels", params=params))["items"]


async def test_create_public_channel_and_its_event(client, app):
    world = await build_world(client, app)
    created = await world.ok(
        "member",
        "POST",
        "/api/workspaces/{W}/channels",
        201,
        json={"name": " #random ", "topic": "anything goes", "kind": "voice"},
    )
    assert created["name"] == "random" and created["kind"] == "voice"
    assert created["topic"] == "anything goes" and created["is_private"] is False
    assert created["created_by"] == world.ids["member_id"] and created["members"] is None
    listed = await channel_list(world, "viewer")
    assert ids_of(listed) == [created["id"]]
    assert listed[0]["can_read"] is True and listed[0]["unread_count"] == 0
    # The event is on the workspace topic: every member (viewer too) reads it.
    feed = await events(world, "viewer", topic="workspace:{W}")
    assert [e["subject_id"] for e in feed if e["type"] == "channel.created"] == [created["id"]]
    assert [e for e in await events(world, "outsider") if e["subject_id"] == created["id"]] == []


@pytest.mark.parametrize(
    "body",
    [
        {"name": ""},
        {"name": "   "},
        {"name": "#"},
        {"name": "x" * 81},
        {"name": "two\nlines"},
        {"name": "ok", "kind": "dm"},
        {"name": "ok", "topic": "t" * 251},
        {"name": "ok", "member_ids": ["not-a-uuid"]},
        {"name": "ok", "surprise": 1},
        {"name": "bad\u0000"},
        {"name": "a\u2028b"},
        {"name": "a\x0bb"},
    ],
)
async def test_bad_channel_bodies_are_422(client, app, body):
    world = await build_world(client, app)
    response = await world.call("member", "POST", "/api/workspaces/{W}/channels", json=body)
    assert_error(response, 422, "validation_error")


async def test_channel_names_are_unique_among_live_channels(client, app):
    world = await build_world(client, app)
    first = await world.ok(
        "member", "POST", "/api/workspaces/{W}/channels", 201, json={"name": "ops"}
    )
    again = await world.call("admin", "POST", "/api/workspaces/{W}/channels", json={"name": "ops"})
    assert_error(again, 409, "conflict")
    # Another workspace may use the name; a deleted channel frees it.
    await world.ok("outsider", "POST", "/api/workspaces/{W2}/channels", 201, json={"name": "ops"})
    await world.ok("admin", "DELETE", f"/api/channels/{first['id']}", 204)
    await world.ok("member", "POST", "/api/workspaces/{W}/channels", 201, json={"name": "ops"})
    renamed = await world.ok(
        "member", "POST", "/api/workspaces/{W}/channels", 201, json={"name": "dev"}
    )
    clash = await world.call(
        "member", "PATCH", f"/api/channels/{renamed['id']}", json={"name": "ops"}
    )
    assert_error(clash, 409, "conflict")


async def test_public_channel_member_list_refused(client, app):
    world = await build_world(client, app)
    response = await world.call(
        "member",
        "POST",
        "/api/workspaces/{W}/channels",
        json={"name": "open", "member_ids": [world.ids["viewer_id"]]},
    )
    assert_error(response, 422, "validation_error")


async def test_private_channel_is_invisible_to_non_members(client, app):
    world = await build_world(client, app, chat=True)
    # PC2: bystander + member. viewer does not see it at all; admin sees it exists.
    assert world.ids["PC2"] not in ids_of(await channel_list(world, "viewer"))
    admin_view = {c["id"]: c for c in await channel_list(world, "admin")}
    assert admin_view[world.ids["PC2"]]["can_read"] is False
    assert admin_view[world.ids["PC2"]]["unread_count"] == 0
    assert world.ids["DM"] not in admin_view  # admins never see DMs
    assert_error(await world.call("viewer", "GET", "/api/channels/{PC2}"), 404, "not_found")
    assert_error(await world.call("admin", "GET", "/api/channels/{PC2}/messages"), 403, "forbidden")
    # Nothing about PC2 reaches non-members through the unfiltered feed.
    for role in ("viewer", "admin", "outsider", "teammate"):
        leaked = [
            e
            for e in await events(world, role)
            if world.ids["PC2"] in (e["subject_id"], e["data"].get("channel_id"))
        ]
        assert leaked == [], role
    member_feed = await events(world, "member", topic="channel:{PC2}")
    assert {e["type"] for e in member_feed} >= {"channel.created", "message.created"}


async def test_admin_joins_a_private_channel_to_read_it(client, app):
    world = await build_world(client, app, chat=True)
    added = await world.ok(
        "admin", "POST", "/api/channels/{PC2}/members", 201, json={"user_id": world.ids["admin_id"]}
    )
    assert world.ids["admin_id"] in [m["id"] for m in added["members"]]
    again = await world.call(
        "admin", "POST", "/api/channels/{PC2}/members", json={"user_id": world.ids["admin_id"]}
    )
    assert again.status_code == 200
    history = await world.ok("admin", "GET", "/api/channels/{PC2}/messages")
    assert [m["content"] for m in history["items"]] == ["side talk"]
    feed = await events(world, "member", topic="channel:{PC2}")
    joined = [e for e in feed if e["type"] == "channel.member_added"]
    assert [e["data"] for e in joined] == [
        {"channel_id": world.ids["PC2"], "user_id": world.ids["admin_id"]}
    ]


async def test_private_channel_members_must_be_workspace_members(client, app):
    world = await build_world(client, app)
    response = await world.call(
        "member",
        "POST",
        "/api/workspaces/{W}/channels",
        json={"name": "x", "is_private": True, "member_ids": [world.ids["outsider_id"]]},
    )
    assert_error(response, 422, "validation_error")


async def test_leaving_and_removing_members(client, app):
    world = await build_world(client, app, chat=True)
    # viewer leaves PC on their own; they lose it at once and are told directly.
    await world.ok("viewer", "DELETE", "/api/channels/{PC}/members/{viewer_id}", 204)
    assert_error(await world.call("viewer", "GET", "/api/channels/{PC}"), 404, "not_found")
    told = await events(world, "viewer", topic="user:{viewer_id}")
    assert [(e["type"], e["data"]["channel_id"]) for e in told] == [
        ("channel.member_removed", world.ids["PC"])
    ]
    again = await world.call("admin", "DELETE", "/api/channels/{PC}/members/{viewer_id}")
    assert_error(again, 404, "not_found")
    # A plain member cannot remove others; the creator (bystander) of PC2 can.
    refused = await world.call("member", "DELETE", "/api/channels/{PC}/members/{admin_id}")
    assert_error(refused, 403, "forbidden")
    await world.ok("bystander", "DELETE", "/api/channels/{PC2}/members/{member_id}", 204)
    assert_error(await world.call("member", "GET", "/api/messages/{PM2}"), 404, "not_found")


async def test_channel_members_adding_people(client, app):
    world = await build_world(client, app, chat=True)
    # A member of PC (member role) adds teammate; a non-member workspace user is refused.
    await world.ok(
        "member",
        "POST",
        "/api/channels/{PC}/members",
        201,
        json={"user_id": world.ids["teammate_id"]},
    )
    outsider = await world.call(
        "member", "POST", "/api/channels/{PC}/members", json={"user_id": world.ids["outsider_id"]}
    )
    assert_error(outsider, 422, "validation_error")
    # DM membership is fixed; public channels have none.
    fixed = await world.call(
        "member", "POST", "/api/channels/{DM}/members", json={"user_id": world.ids["viewer_id"]}
    )
    assert_error(fixed, 409, "conflict")
    public = await world.call(
        "member", "POST", "/api/channels/{CH}/members", json={"user_id": world.ids["viewer_id"]}
    )
    assert_error(public, 409, "conflict")


async def test_dm_is_one_channel_per_set_of_people(client, app):
    world = await build_world(client, app)
    body = {"user_ids": [world.ids["bystander_id"], world.ids["teammate_id"]]}
    first = await world.ok("member", "POST", "/api/workspaces/{W}/dms", 201, json=body)
    assert first["kind"] == "dm" and first["is_private"] is True
    assert sorted(m["username"] for m in first["members"]) == ["bystander", "member", "teammate"]
    same = await world.ok(
        "teammate",
        "POST",
        "/api/workspaces/{W}/dms",
        200,
        json={
            "user_ids": [
                world.ids["member_id"],
                world.ids["bystander_id"],
                world.ids["teammate_id"],
            ]
        },
    )
    assert same["id"] == first["id"]
    pair = await world.ok(
        "member",
        "POST",
        "/api/workspaces/{W}/dms",
        201,
        json={"user_ids": [world.ids["bystander_id"]]},
    )
    assert pair["id"] != first["id"]
    note = await world.ok(
        "member",
        "POST",
        "/api/workspaces/{W}/dms",
        201,
        json={"user_ids": [world.ids["member_id"]]},
    )
    assert [m["username"] for m in note["members"]] == ["member"]
    created = [e for e in await events(world, "bystander") if e["type"] == "channel.created"]
    assert sorted(e["subject_id"] for e in created) == sorted([first["id"], pair["id"]])
    for role in ("admin", "viewer"):
        assert_error(
            await world.call(role, "GET", f"/api/channels/{first['id']}"), 404, "not_found"
        )
        assert first["id"] not in ids_of(await channel_list(world, role))
    dms = await channel_list(world, "member", kind="dm")
    assert sorted(ids_of(dms)) == sorted([first["id"], pair["id"], note["id"]])


@pytest.mark.parametrize(
    "user_ids", [[], ["outsider_id"], ["superuser_id"], ["x"] * 9, "not-a-list"]
)
async def test_bad_dm_requests(client, app, user_ids):
    world = await build_world(client, app)
    if isinstance(user_ids, list):
        user_ids = [world.ids.get(u, u) for u in user_ids]
        if len(user_ids) == 9:
            user_ids = [world.ids["bystander_id"]] * 9
    response = await world.call(
        "member", "POST", "/api/workspaces/{W}/dms", json={"user_ids": user_ids}
    )
    assert_error(response, 422, "validation_error")


async def test_concurrent_dm_opens_make_one_channel(client, app):
    import asyncio

    world = await build_world(client, app)
    body = {"user_ids": [world.ids["bystander_id"]]}
    responses = await asyncio.gather(
        *[world.call("member", "POST", "/api/workspaces/{W}/dms", json=body) for _ in range(4)],
        world.call(
            "bystander",
            "POST",
            "/api/workspaces/{W}/dms",
            json={"user_ids": [world.ids["member_id"]]},
        ),
    )
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 201]
    assert len({r.json()["id"] for r in responses}) == 1


async def test_project_channels_follow_project_visibility(client, app):
    world = await build_world(client, app)
    qc = await world.ok(
        "admin",
        "POST",
        "/api/workspaces/{W}/channels",
        201,
        json={"name": "q-chat", "project_id": world.ids["Q"]},
    )
    # Q is private: members without a grant do not see its channel or its events.
    assert qc["id"] not in ids_of(await channel_list(world, "member"))
    assert_error(await world.call("member", "GET", f"/api/channels/{qc['id']}"), 404, "not_found")
    assert [e for e in await events(world, "member") if e["subject_id"] == qc["id"]] == []
    # A team grant (viewer on Q for team T) lets teammate read but not post.
    await world.ok(
        "admin", "PUT", "/api/projects/{Q}/team-permissions/{T}", json={"role": "viewer"}
    )
    await world.ok("teammate", "GET", f"/api/channels/{qc['id']}")
    refused = await world.call(
        "teammate", "POST", f"/api/channels/{qc['id']}/messages", json={"content": "hi"}
    )
    assert_error(refused, 403, "forbidden")
    # A user grant raising a workspace viewer to member on Q lets them post there.
    await world.ok(
        "admin", "PUT", "/api/projects/{Q}/permissions/{viewer_id}", json={"role": "member"}
    )
    await world.ok(
        "viewer", "POST", f"/api/channels/{qc['id']}/messages", 201, json={"content": "hi"}
    )
    feed = await events(world, "viewer", topic=f"channel:{qc['id']}")
    assert [e["type"] for e in feed] == ["channel.created", "message.created"]
    # Revoking the grant hides the channel again.
    await world.ok("admin", "DELETE", "/api/projects/{Q}/permissions/{viewer_id}", 204)
    assert_error(await world.call("viewer", "GET", f"/api/channels/{qc['id']}"), 404, "not_found")


async def test_project_channel_needs_a_visible_project_of_the_workspace(client, app):
    world = await build_world(client, app)
    for project, status in (("Q", 422), ("P2", 422)):
        response = await world.call(
            "member",
            "POST",
            "/api/workspaces/{W}/channels",
            json={"name": "x", "project_id": world.ids[project]},
        )
        assert_error(response, status, "validation_error")
    await world.ok(
        "member",
        "POST",
        "/api/workspaces/{W}/channels",
        201,
        json={"name": "p", "project_id": world.ids["P"]},
    )


async def test_creator_manages_their_channel_and_delete_keeps_history(client, app):
    world = await build_world(client, app)
    mine = await world.ok(
        "member", "POST", "/api/workspaces/{W}/channels", 201, json={"name": "mine"}
    )
    path = f"/api/channels/{mine['id']}"
    updated = await world.ok("member", "PATCH", path, json={"name": "ours", "topic": "shared"})
    assert (updated["name"], updated["topic"]) == ("ours", "shared")
    assert_error(
        await world.call("bystander", "PATCH", path, json={"topic": "x"}), 403, "forbidden"
    )
    assert_error(await world.call("bystander", "DELETE", path), 403, "forbidden")
    await world.ok("member", "POST", f"{path}/messages", 201, json={"content": "before"})
    await world.ok("member", "DELETE", path, 204)
    assert_error(await world.call("member", "GET", path), 404, "not_found")
    assert_error(await world.call("member", "GET", f"{path}/messages"), 404, "not_found")
    assert mine["id"] not in ids_of(await channel_list(world, "member"))
    history = [e["type"] for e in await events(world, "bystander", topic=f"channel:{mine['id']}")]
    assert history == ["message.created"]
    workspace_feed = [
        e["type"]
        for e in await events(world, "bystander", topic="workspace:{W}")
        if e["subject_id"] == mine["id"]
    ]
    assert workspace_feed == ["channel.created", "channel.updated", "channel.deleted"]


async def test_removed_workspace_member_loses_channels(client, app):
    world = await build_world(client, app, chat=True)
    await world.ok("admin", "DELETE", "/api/workspaces/{W}/members/{member_id}", 204)
    # Each private channel records the departure; the member hears of it directly too.
    for channel in ("PC", "PC2"):
        feed = await events(
            world, "bystander" if channel == "PC2" else "viewer", topic=f"channel:{{{channel}}}"
        )
        removed = [e["data"] for e in feed if e["type"] == "channel.member_removed"]
        assert removed == [{"channel_id": world.ids[channel], "user_id": world.ids["member_id"]}]
    told = await events(world, "member", topic="user:{member_id}")
    assert sorted(
        e["data"]["channel_id"] for e in told if e["type"] == "channel.member_removed"
    ) == sorted([world.ids["PC"], world.ids["PC2"]])
    for channel in ("CH", "PC", "PC2", "DM"):
        response = await world.call("member", "GET", f"/api/channels/{{{channel}}}/messages")
        assert_error(response, 404, "not_found")
    # Re-added, they are back in public channels and their DM, not in private channels.
    await world.ok(
        "admin",
        "POST",
        "/api/workspaces/{W}/members",
        201,
        json={"user_id": world.ids["member_id"]},
    )
    await world.ok("member", "GET", "/api/channels/{CH}/messages")
    await world.ok("member", "GET", "/api/channels/{DM}/messages")
    for channel in ("PC", "PC2"):
        assert_error(
            await world.call("member", "GET", f"/api/channels/{{{channel}}}"), 404, "not_found"
        )


async def test_channel_list_pages(client, app):
    world = await build_world(client, app)
    made = [
        (
            await world.ok(
                "member", "POST", "/api/workspaces/{W}/channels", 201, json={"name": f"c{n}"}
            )
        )["id"]
        for n in range(5)
    ]
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await world.ok("viewer", "GET", "/api/workspaces/{W}/channels", params=params)
        seen += ids_of(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == made


async def test_names_of_unseen_channels_do_not_clash(client, app):
    """A 409 on a name only ever points at a public channel the caller can see."""
    world = await build_world(client, app, chat=True)
    qc = await world.ok(
        "admin",
        "POST",
        "/api/workspaces/{W}/channels",
        201,
        json={"name": "q", "project_id": world.ids["Q"]},
    )
    for name in ("side", "q", "core"):  # PC2, Q's channel, PC: private or unseen by teammate
        await world.ok("teammate", "POST", "/api/workspaces/{W}/channels", 201, json={"name": name})
    clash = await world.call(
        "teammate", "POST", "/api/workspaces/{W}/channels", json={"name": "general"}
    )
    assert_error(clash, 409, "conflict")
    assert qc["name"] == "q"


async def test_noop_patch_records_nothing(client, app):
    world = await build_world(client, app, chat=True)
    before = await events(world, "admin", topic="workspace:{W}")
    for body in ({}, {"name": None, "topic": None}, {"name": "general"}, {"topic": ""}):
        await world.ok("admin", "PATCH", "/api/channels/{CH}", json=body)
    assert await events(world, "admin", topic="workspace:{W}") == before


async def test_concurrent_adds_of_one_member(client, app):
    import asyncio

    world = await build_world(client, app, chat=True)
    body = {"user_id": world.ids["teammate_id"]}
    responses = await asyncio.gather(
        *[
            world.call(role, "POST", "/api/channels/{PC}/members", json=body)
            for role in ("admin", "member", "admin", "member")
        ]
    )
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 201]
    added = [
        e
        for e in await events(world, "teammate", topic="channel:{PC}")
        if e["type"] == "channel.member_added"
    ]
    assert len(added) == 1


async def test_deleting_a_project_closes_its_channels(client, app):
    world = await build_world(client, app)
    pc = await world.ok(
        "member",
        "POST",
        "/api/workspaces/{W}/channels",
        201,
        json={"name": "p-chat", "project_id": world.ids["P"]},
    )
    await world.ok("admin", "DELETE", "/api/projects/{P}", 204)
    assert_error(await world.call("member", "GET", f"/api/channels/{pc['id']}"), 404, "not_found")
    feed = await events(world, "member", topic="workspace:{W}")
    assert [e["type"] for e in feed if e["subject_id"] == pc["id"]] == [
        "channel.created",
        "channel.deleted",
    ]


async def test_archived_project_channels_are_read_only(client, app):
    world = await build_world(client, app)
    pc = await world.ok(
        "member",
        "POST",
        "/api/workspaces/{W}/channels",
        201,
        json={"name": "p-chat", "project_id": world.ids["P"]},
    )
    posted = await world.ok(
        "member", "POST", f"/api/channels/{pc['id']}/messages", 201, json={"content": "hi"}
    )
    await world.ok("admin", "PATCH", "/api/projects/{P}", json={"archived": True})
    refused = await world.call(
        "member", "POST", f"/api/channels/{pc['id']}/messages", json={"content": "x"}
    )
    assert_error(refused, 409, "conflict")
    assert_error(
        await world.call("member", "PUT", f"/api/messages/{posted['id']}/reactions/ok"),
        409,
        "conflict",
    )
    assert (await world.ok("viewer", "GET", f"/api/channels/{pc['id']}/messages"))["items"]
