"""Calls: participants, signaling to one target only, TURN credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest

from tests.helpers import assert_error


async def voice_channel(world) -> str:
    created = await world.ok(
        "admin",
        "POST",
        "/api/workspaces/{W}/channels",
        201,
        json={"name": "huddle", "kind": "voice"},
    )
    return str(created["id"])


def participants(frame) -> bool:
    return frame.get("type") == "call.participants"


async def test_call_participants_and_signals_reach_only_the_target(connect, world):
    vc = await voice_channel(world)
    member, admin, bystander = (
        await connect("member"),
        await connect("admin"),
        await connect("bystander"),
    )
    for client in (member, admin, bystander):
        await client.ok("subscribe", topic=f"channel:{vc}")
    joined = await member.ok("call.join", channel_id=vc)
    assert joined == {"channel_id": vc, "user_ids": [world.ids["member_id"]]}
    await admin.ok("call.join", channel_id=vc)
    both = sorted([world.ids["member_id"], world.ids["admin_id"]])
    seen = await bystander.wait_for(lambda f: participants(f) and len(f["user_ids"]) == 2)
    assert seen == {"type": "call.participants", "channel_id": vc, "user_ids": both}
    offer = {"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1"}
    assert (
        await member.ok(
            "call.signal", channel_id=vc, target_user_id=world.ids["admin_id"], signal=offer
        )
        is None
    )
    relayed = await admin.wait_for(lambda f: f.get("type") == "call.signal")
    assert relayed == {
        "type": "call.signal",
        "channel_id": vc,
        "sender_user_id": world.ids["member_id"],
        "signal": offer,
    }
    # Nobody else gets it: not the bystander watching the channel, not the sender.
    assert [f for f in await bystander.quiet() if f.get("type") == "call.signal"] == []
    assert [f for f in await member.quiet() if f.get("type") == "call.signal"] == []
    # A target outside the call, yourself, or signaling before joining: not_in_call.
    for client, target in (
        (member, world.ids["bystander_id"]),
        (member, world.ids["member_id"]),
        (member, world.ids["outsider_id"]),
        (bystander, world.ids["admin_id"]),
    ):
        answer = await client.call("call.signal", channel_id=vc, target_user_id=target, signal={})
        assert answer["ok"] is False and answer["error"]["code"] == "not_in_call", answer
    # Leaving (or dropping the socket) updates everyone.
    left = await admin.ok("call.leave", channel_id=vc)
    assert left["user_ids"] == [world.ids["member_id"]]
    await member.close()
    empty = await bystander.wait_for(lambda f: participants(f) and f["user_ids"] == [])
    assert empty["channel_id"] == vc
    again = await admin.call("call.leave", channel_id=vc)
    assert again["ok"] is False and again["error"]["code"] == "not_in_call"


async def test_calls_need_a_call_channel_and_posting_rights(connect, world):
    vc = await voice_channel(world)
    member, viewer, outsider = (
        await connect("member"),
        await connect("viewer"),
        await connect("outsider"),
    )
    text = await member.call("call.join", channel_id=world.ids["CH"])
    assert text["ok"] is False and text["error"]["code"] == "not_a_call_channel"
    for client, code in ((viewer, "forbidden"), (outsider, "not_found")):
        answer = await client.call("call.join", channel_id=vc)
        assert answer["ok"] is False and answer["error"]["code"] == code
    # DMs hold calls too, for their members only.
    dm = await member.ok("call.join", channel_id=world.ids["DM"])
    assert dm["user_ids"] == [world.ids["member_id"]]
    admin = await connect("admin")
    hidden = await admin.call("call.join", channel_id=world.ids["DM"])
    assert hidden["ok"] is False and hidden["error"]["code"] == "not_found"


async def test_turn_credentials_unconfigured_is_503(world):
    assert_error(
        await world.call("member", "GET", "/api/webrtc/turn-credentials"),
        503,
        "service_unavailable",
    )
    assert_error(
        await world.call("anonymous", "GET", "/api/webrtc/turn-credentials"),
        401,
        "not_authenticated",
    )


@pytest.mark.parametrize(
    "live_settings",
    [
        {
            "turn_secret": "s3cret",
            "turn_uris": "turn:127.0.0.1:3478,turns:t.example:5349",
            "turn_ttl": 600,
        }
    ],
)
async def test_turn_credentials_follow_the_coturn_scheme(world):
    before = int(time.time())
    for role in ("outsider", "viewer", "member", "admin", "superuser"):
        creds = await world.ok(role, "GET", "/api/webrtc/turn-credentials")
        expiry, user_id = creds["username"].split(":")
        assert user_id == world.ids[f"{role}_id"]
        assert before + 600 <= int(expiry) <= int(time.time()) + 600
        expected = base64.b64encode(
            hmac.new(b"s3cret", creds["username"].encode(), hashlib.sha1).digest()
        ).decode()
        assert creds["password"] == expected
        assert creds["ttl"] == 600
        assert creds["uris"] == ["turn:127.0.0.1:3478", "turns:t.example:5349"]
    assert_error(
        await world.call("anonymous", "GET", "/api/webrtc/turn-credentials"),
        401,
        "not_authenticated",
    )


async def test_losing_access_ends_the_call(connect, world):
    vc = await voice_channel(world)
    member, admin = await connect("member"), await connect("admin")
    await admin.ok("subscribe", topic=f"channel:{vc}")
    await member.ok("call.join", channel_id=vc)
    await admin.ok("call.join", channel_id=vc)
    await world.ok("admin", "DELETE", "/api/workspaces/{W}/members/{member_id}", 204)
    alone = await admin.wait_for(
        lambda f: participants(f) and f["user_ids"] == [world.ids["admin_id"]]
    )
    assert alone["channel_id"] == vc
    refused = await admin.call(
        "call.signal", channel_id=vc, target_user_id=world.ids["member_id"], signal={}
    )
    assert refused["ok"] is False and refused["error"]["code"] == "not_in_call"
    gone = await member.call(
        "call.signal", channel_id=vc, target_user_id=world.ids["admin_id"], signal={}
    )
    assert gone["ok"] is False and gone["error"]["code"] == "not_in_call"


async def test_a_second_tab_takes_over_the_call(connect, world):
    vc = await voice_channel(world)
    tab1, tab2, admin = await connect("member"), await connect("member"), await connect("admin")
    await admin.ok("call.join", channel_id=vc)
    await tab1.ok("call.join", channel_id=vc)
    await tab2.ok("call.join", channel_id=vc)
    stale = await tab1.call(
        "call.signal", channel_id=vc, target_user_id=world.ids["admin_id"], signal={}
    )
    assert stale["ok"] is False and stale["error"]["code"] == "not_in_call"
    await tab2.ok(
        "call.signal", channel_id=vc, target_user_id=world.ids["admin_id"], signal={"n": 2}
    )
    await admin.ok(
        "call.signal", channel_id=vc, target_user_id=world.ids["member_id"], signal={"n": 3}
    )
    relayed = await tab2.wait_for(lambda f: f.get("type") == "call.signal")
    assert relayed["signal"] == {"n": 3}
    assert [f for f in await tab1.quiet() if f.get("type") == "call.signal"] == []
