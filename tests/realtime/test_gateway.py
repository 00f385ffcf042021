"""The WebSocket gateway: handshake, frames, live delivery, resume, access changes."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import websockets
from sqlalchemy import func, select

from huddle.events.models import Event
from tests.realtime.wsclient import TIMEOUT, Client, is_event, token_of


async def _closed_with(ws) -> int:
    with pytest.raises(websockets.ConnectionClosed) as info:
        async with asyncio.timeout(TIMEOUT):
            while True:
                await ws.recv()
    assert info.value.rcvd is not None
    return info.value.rcvd.code


@pytest.mark.parametrize(
    "first",
    [
        {"type": "auth", "token": "not-a-token"},
        {"type": "auth", "token": ""},
        {"type": "auth"},
        {"type": "ping"},
        "not json",
        ["auth"],
    ],
)
async def test_bad_first_frame_closes_4401(live, world, first):
    async with websockets.connect(live.ws_url) as ws:
        await ws.send(first if isinstance(first, str) else json.dumps(first))
        assert await _closed_with(ws) == 4401


@pytest.mark.parametrize("live_settings", [{"ws_auth_timeout": 0.2}])
async def test_silence_closes_4408(live, world):
    async with websockets.connect(live.ws_url) as ws:
        assert await _closed_with(ws) == 4408


async def test_deactivated_user_cannot_connect(live, world):
    await world.ok("superuser", "PATCH", "/api/admin/users/{member_id}", json={"is_active": False})
    async with websockets.connect(live.ws_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token_of(world.headers["member"])}))
        assert await _closed_with(ws) == 4401


async def test_ready_carries_the_latest_seq_and_api_tokens_work(live, world):
    await live.app.state.dispatcher.flush()
    async with live.app.state.db.read_session() as session:
        latest = await session.scalar(select(func.max(Event.seq)))
    assert latest
    created = await world.ok("member", "POST", "/api/auth/api-tokens", 201, json={"name": "bot"})
    client = await Client.connect(live.ws_url, created["token"])
    assert client.ready == {"type": "ready", "user_id": world.ids["member_id"], "cursor": latest}
    await client.close()


async def test_ping_acks_and_bad_frames(connect):
    client = await connect("member")
    assert await client.call("ping") == {"type": "pong", "ref": "r1"}
    await client.ws.send("{broken")
    broken = await client.recv()
    assert broken["ok"] is False and broken["error"]["code"] == "validation_error"
    for frame in (
        {"type": "nope", "ref": 7},
        {"type": "subscribe", "ref": 8},
        {"type": "subscribe", "ref": 9, "topic": "w" * 101},
        {"type": "resume", "ref": 10, "since": -1},
        {"type": "message.send", "ref": 11, "channel_id": "x", "content": "hi"},
        {"type": "subscribe", "ref": 12, "topic": "galaxy:far"},
    ):
        await client.ws.send(json.dumps(frame))
        answer = await client.recv()
        assert answer["ref"] == frame["ref"] and answer["ok"] is False, answer
        assert answer["error"]["code"] == "validation_error", answer
    await client.ws.send(b"\x00\x01")
    binary = await client.recv()
    assert binary["ok"] is False and binary["error"]["code"] == "text_only"
    assert (await client.call("ping"))["type"] == "pong"  # still open


@pytest.mark.parametrize("live_settings", [{"ws_max_frame_kb": 1}])
async def test_too_large_frame_closes_1009(live, connect):
    client = await connect("member")
    await client.ws.send(json.dumps({"type": "ping", "pad": "x" * 2000}))
    assert await _closed_with(client.ws) == 1009


async def test_two_users_see_each_other_live(connect, world):
    alice, bob = await connect("member"), await connect("admin")
    for client in (alice, bob):
        await client.ok("subscribe", topic=f"channel:{world.ids['CH']}")
        await client.ok("subscribe", topic=f"project:{world.ids['P']}")
    sent = await alice.ok(
        "message.send", channel_id=world.ids["CH"], content="live @admin", client_msg_id="c1"
    )
    assert sent["content"] == "live @admin" and sent["author"]["username"] == "member"
    created = await bob.event("message.created")
    assert created["data"]["id"] == sent["id"] and created["topic"] == f"channel:{world.ids['CH']}"
    mention = await bob.event("mention")  # on bob's own user topic, implicit
    assert mention["data"]["message_id"] == sent["id"]
    # The same client_msg_id over the socket returns the first message.
    again = await alice.ok(
        "message.send", channel_id=world.ids["CH"], content="live @admin", client_msg_id="c1"
    )
    assert again["id"] == sent["id"]
    await world.ok("admin", "PUT", f"/api/messages/{sent['id']}/reactions/tada")
    assert (await alice.event("reaction.added"))["data"]["emoji"] == "tada"
    await world.ok("member", "PATCH", f"/api/messages/{sent['id']}", json={"content": "edited"})
    assert (await bob.event("message.updated"))["data"]["content"] == "edited"
    await world.ok(
        "member", "POST", "/api/tasks/{TK}/move", json={"column_id": world.ids["C_done"]}
    )
    moved = await bob.event("task.moved")
    assert moved["data"]["id"] == world.ids["TK"] and moved["data"]["status"] == "done"
    assert (await alice.ok("typing", channel_id=world.ids["CH"])) is None
    typing = await bob.wait_for(lambda f: f.get("type") == "typing")
    assert typing == {
        "type": "typing",
        "channel_id": world.ids["CH"],
        "user_id": world.ids["member_id"],
    }
    assert [f for f in await alice.quiet() if f.get("type") == "typing"] == []


async def test_send_errors_are_acks_in_the_error_shape(connect, world):
    viewer = await connect("viewer")
    refused = await viewer.call("message.send", channel_id=world.ids["CH"], content="hi")
    assert refused["ok"] is False and refused["error"]["code"] == "forbidden"
    member = await connect("member")
    for fields, code in (
        ({"channel_id": world.ids["CH"], "content": ""}, "validation_error"),
        ({"channel_id": world.ids["CH"], "content": "x" * 10_001}, "validation_error"),
        ({"channel_id": world.ids["CH2"], "content": "hi"}, "not_found"),
        (
            {"channel_id": world.ids["CH"], "content": "hi", "parent_id": world.ids["PM2"]},
            "validation_error",
        ),
    ):
        answer = await member.call("message.send", **fields)
        assert answer["ok"] is False and answer["error"]["code"] == code, answer


async def test_resume_replays_exactly_what_was_missed(live, connect, world):
    first = await connect("viewer")
    await first.ok("subscribe", topic=f"channel:{world.ids['CH']}")
    cursor = first.ready["cursor"]
    seen = (
        await first.ok("message.send", channel_id=world.ids["CH"], content="x") if False else None
    )
    del seen
    posted = [
        (
            await world.ok(
                "member", "POST", "/api/channels/{CH}/messages", 201, json={"content": f"m{n}"}
            )
        )["id"]
        for n in range(3)
    ]
    got = [(await first.event("message.created"))["data"]["id"] for _ in posted]
    assert got == posted
    await first.close()
    missed = [
        (
            await world.ok(
                "member", "POST", "/api/channels/{CH}/messages", 201, json={"content": f"n{n}"}
            )
        )["id"]
        for n in range(4)
    ]
    await live.app.state.dispatcher.flush()
    # A new socket resumes from the last seq the old one saw.
    seen_seq = (
        await world.ok(
            "viewer", "GET", "/api/events", params={"topic": f"channel:{world.ids['CH']}"}
        )
    )["items"]
    after = next(e["id"] for e in seen_seq if e["subject_id"] == posted[-1])
    second = await connect("viewer")
    await second.ok("subscribe", topic=f"channel:{world.ids['CH']}")
    answer = await second.call("resume", since=after)
    assert answer["ok"] is True and answer["data"]["replayed"] == 4, answer
    replayed = [f["event"]["data"]["id"] for f in second.inbox if f.get("type") == "event"]
    assert replayed == missed
    second.inbox.clear()
    # Then live, nothing twice.
    late = await world.ok(
        "member", "POST", "/api/channels/{CH}/messages", 201, json={"content": "late"}
    )
    assert (await second.event("message.created"))["data"]["id"] == late["id"]
    assert [f for f in await second.quiet() if f.get("type") == "event"] == []
    assert cursor <= after


async def test_resume_has_no_gap_or_duplicate_at_the_seam(live, connect, world):
    client = await connect("viewer")
    await client.ok("subscribe", topic=f"channel:{world.ids['CH']}")
    since = client.ready["cursor"]

    async def writer():
        for n in range(25):
            await world.ok(
                "member", "POST", "/api/channels/{CH}/messages", 201, json={"content": f"s{n}"}
            )

    task = asyncio.create_task(writer())
    await asyncio.sleep(0.05)
    answer = await client.call("resume", since=since)
    assert answer["ok"] is True
    await task
    await live.app.state.dispatcher.flush()
    contents, ids = [], []
    async with asyncio.timeout(TIMEOUT):
        while len(ids) < 25:
            frame = await client.wait_for(is_event("message.created"))
            if frame["event"]["data"]["content"].startswith("s"):
                contents.append(frame["event"]["data"]["content"])
                ids.append(frame["event"]["id"])
    assert contents == [f"s{n}" for n in range(25)] and ids == sorted(ids)
    extra = [f for f in await client.quiet() if f.get("type") == "event"]
    assert extra == [], [(e["event"]["id"], e["event"]["data"]["content"]) for e in extra]


@pytest.mark.parametrize("live_settings", [{"ws_replay_limit": 3}])
async def test_resume_too_far_back_asks_for_a_resync(live, connect, world):
    client = await connect("viewer")
    await client.ok("subscribe", topic=f"channel:{world.ids['CH']}")
    for n in range(4):
        await world.ok(
            "member", "POST", "/api/channels/{CH}/messages", 201, json={"content": f"{n}"}
        )
    await live.app.state.dispatcher.flush()
    answer = await client.call("resume", since=client.ready["cursor"])
    assert answer["ok"] is False and answer["error"]["code"] == "resync_required"
    assert answer["error"]["details"]["cursor"] >= client.ready["cursor"]
    posted = await world.ok(
        "member", "POST", "/api/channels/{CH}/messages", 201, json={"content": "after"}
    )
    live_after = await client.wait_for(  # live delivery goes on anyway
        lambda f: is_event("message.created")(f) and f["event"]["data"]["id"] == posted["id"]
    )
    assert live_after["event"]["data"]["content"] == "after"
    ahead = await client.call("resume", since=10**9)
    assert ahead["ok"] is False and ahead["error"]["code"] == "validation_error"


async def test_removed_member_stops_receiving_at_once(connect, world):
    member = await connect("member")
    for topic in (
        f"workspace:{world.ids['W']}",
        f"channel:{world.ids['CH']}",
        f"channel:{world.ids['PC']}",
    ):
        await member.ok("subscribe", topic=topic)
    await world.ok("admin", "DELETE", "/api/workspaces/{W}/members/{member_id}", 204)
    revoked = set()
    async with asyncio.timeout(TIMEOUT):
        while len(revoked) < 3:
            frame = await member.wait_for(lambda f: f.get("type") == "unsubscribed")
            revoked.add(frame["topic"])
    assert revoked == {
        f"workspace:{world.ids['W']}",
        f"channel:{world.ids['CH']}",
        f"channel:{world.ids['PC']}",
    }
    await world.ok(
        "admin", "POST", "/api/channels/{CH}/messages", 201, json={"content": "after you left"}
    )
    frames = await member.quiet(0.5)
    assert [
        f
        for f in frames
        if f.get("type") == "event" and f["event"]["topic"] != f"user:{world.ids['member_id']}"
    ] == []
    again = await member.call("subscribe", topic=f"channel:{world.ids['CH']}")
    assert again["ok"] is False and again["error"]["code"] == "not_found"


async def test_leaving_a_private_channel_revokes_its_subscription(connect, world):
    viewer = await connect("viewer")
    await viewer.ok("subscribe", topic=f"channel:{world.ids['PC']}")
    await viewer.ok("subscribe", topic=f"channel:{world.ids['CH']}")
    await world.ok("admin", "DELETE", "/api/channels/{PC}/members/{viewer_id}", 204)
    frame = await viewer.wait_for(lambda f: f.get("type") == "unsubscribed")
    assert frame["topic"] == f"channel:{world.ids['PC']}"
    await world.ok("admin", "POST", "/api/channels/{PC}/messages", 201, json={"content": "secret"})
    await world.ok("admin", "POST", "/api/channels/{CH}/messages", 201, json={"content": "public"})
    event = await viewer.event("message.created")
    assert event["topic"] == f"channel:{world.ids['CH']}"


async def test_deactivation_closes_sockets(connect, world):
    member = await connect("member")
    await world.ok("superuser", "PATCH", "/api/admin/users/{member_id}", json={"is_active": False})
    assert await _closed_with(member.ws) == 4401


async def test_presence_is_per_user_across_tabs(connect, world):
    admin = await connect("admin")
    joined = await admin.ok("subscribe", topic=f"workspace:{world.ids['W']}")
    assert joined["online"] == [world.ids["admin_id"]]
    tab1 = await connect("member")
    online = await admin.wait_for(lambda f: f.get("type") == "presence")
    assert online == {
        "type": "presence",
        "workspace_id": world.ids["W"],
        "user_id": world.ids["member_id"],
        "status": "online",
    }
    tab2 = await connect("member")
    await tab1.close()
    assert [f for f in await admin.quiet() if f.get("type") == "presence"] == []
    await tab2.close()
    offline = await admin.wait_for(lambda f: f.get("type") == "presence")
    assert offline["status"] == "offline" and offline["user_id"] == world.ids["member_id"]
    outsider = await connect("outsider")
    assert [f for f in await admin.quiet() if f.get("type") == "presence"] == []
    del outsider


@pytest.mark.parametrize("live_settings", [{"ws_heartbeat": 0.2}])
async def test_heartbeats(live, connect):
    client = await connect("member")
    beat = await client.wait_for(lambda f: f.get("type") == "heartbeat")
    assert beat["cursor"] >= 0


async def test_presence_follows_membership(live, connect, world):
    admin = await connect("admin")
    await admin.ok("subscribe", topic=f"workspace:{world.ids['W']}")
    bystander = await connect("bystander")
    await admin.wait_for(lambda f: f.get("type") == "presence" and f["status"] == "online")
    await world.ok("admin", "DELETE", "/api/workspaces/{W}/members/{bystander_id}", 204)
    await live.app.state.dispatcher.flush()  # the hub has seen the removal
    await bystander.close()
    assert [f for f in await admin.quiet(0.5) if f.get("type") == "presence"] == []


async def test_binary_auth_and_deep_json(live, world, connect):
    async with websockets.connect(live.ws_url) as ws:
        await ws.send(b"\x01\x02")
        assert await _closed_with(ws) == 4401
    client = await connect("member")
    await client.ws.send('{"type": "ping", "ref": 1, "x": ' + "[" * 3000 + "]" * 3000 + "}")
    answer = await client.recv()
    assert answer["ok"] is False and answer["error"]["code"] == "validation_error"
    refused = [await client.call("subscribe", topic=f"workspace:{uuid.uuid4()}") for _ in range(5)]
    assert all(r["ok"] is False for r in refused)
    assert len(live.app.state.hub.epochs) <= 1  # refused topics leave nothing behind


async def test_a_missed_event_is_read_back_from_the_log(live, connect, world):
    client = await connect("viewer")
    await client.ok("subscribe", topic=f"channel:{world.ids['CH']}")
    hub = live.app.state.hub
    original, dropped = hub.deliver_event, []

    async def lossy(seq, topic, event_type, raw, event=None):
        if not dropped and event_type == "message.created":
            dropped.append(seq)  # lost on the way, like a failed relay through Redis
            return
        await original(seq, topic, event_type, raw, event)

    hub.deliver_event = lossy
    first = await world.ok(
        "member", "POST", "/api/channels/{CH}/messages", 201, json={"content": "a"}
    )
    await live.app.state.dispatcher.flush()
    second = await world.ok(
        "member", "POST", "/api/channels/{CH}/messages", 201, json={"content": "b"}
    )
    got = [(await client.event("message.created"))["data"]["id"] for _ in range(2)]
    assert dropped and got == [first["id"], second["id"]]


@pytest.mark.parametrize("live_settings", [{"ws_send_queue": 8, "rate_messages": "5000/1m"}])
async def test_a_client_that_stops_reading_is_closed_1013_and_slows_no_one(live, world, connect):
    """A real socket whose reader stopped: small kernel buffers on both ends (so the test
    need not push megabytes through loopback), no compression, and a client library
    that stops taking frames off the socket. The server's buffers fill, then the send
    queue, and the server closes that socket with 1013 — while a reading client gets
    every message, in order."""
    import socket

    reader = await connect("member")
    await reader.ok("subscribe", topic=f"channel:{world.ids['CH']}")
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", int(live.url.rsplit(":", 1)[1])))
    raw.setblocking(False)
    stalled = await Client.connect(
        live.ws_url, token_of(world.headers["viewer"]), sock=raw, max_queue=1, compression=None
    )
    await stalled.ok("subscribe", topic=f"channel:{world.ids['CH']}")
    for protocol in live.server.server_state.connections:  # the server's end of that socket
        transport = getattr(protocol, "transport", None)
        if transport is not None and transport.get_extra_info("peername") == raw.getsockname():
            transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sender = await connect("admin")
    viewer = uuid.UUID(world.ids["viewer_id"])
    sent: list[str] = []
    while live.app.state.hub._by_user.get(viewer):
        assert len(sent) < 200, "the stalled socket was never closed"
        content = f"{len(sent)} " + "y" * 9_990
        message = await sender.ok("message.send", channel_id=world.ids["CH"], content=content)
        sent.append(message["id"])
    assert await _closed_with(stalled.ws) == 1013
    got = [(await reader.event("message.created"))["subject_id"] for _ in sent]
    assert got == sent
