"""Every client frame type as every role: what each may subscribe to, post, type, call.

``ok`` means an ack with ``ok: true``; otherwise the error code of the ack. Roles as in
the REST matrix (tests/world.py): the outsider is admin of another workspace, the
superuser is a site admin who is not a member of W. Anonymous sockets never get past
the handshake (4401), tested first.
"""

from __future__ import annotations

import json

import pytest
import websockets

from tests.realtime.test_gateway import _closed_with

OK = "ok"
NF = "not_found"
FB = "forbidden"
NIC = "not_in_call"

#          outsider, viewer, member, admin, superuser
CASES = [
    ("subscribe", {"topic": "workspace:{W}"}, (NF, OK, OK, OK, NF)),
    ("subscribe", {"topic": "workspace:{W}:admin"}, (NF, NF, NF, OK, NF)),
    ("subscribe", {"topic": "workspace:{W2}"}, (OK, NF, NF, NF, NF)),
    ("subscribe", {"topic": "project:{P}"}, (NF, OK, OK, OK, NF)),
    ("subscribe", {"topic": "project:{Q}"}, (NF, NF, NF, OK, NF)),
    ("subscribe", {"topic": "channel:{CH}"}, (NF, OK, OK, OK, NF)),
    ("subscribe", {"topic": "channel:{PC}"}, (NF, OK, OK, OK, NF)),
    ("subscribe", {"topic": "channel:{PC2}"}, (NF, NF, OK, NF, NF)),
    ("subscribe", {"topic": "channel:{DM}"}, (NF, NF, OK, NF, NF)),
    ("subscribe", {"topic": "channel:{CH2}"}, (OK, NF, NF, NF, NF)),
    ("subscribe", {"topic": "user:{member_id}"}, (NF, NF, OK, NF, NF)),
    ("unsubscribe", {"topic": "channel:{CH}"}, (OK, OK, OK, OK, OK)),
    ("resume", {"since": 0}, (OK, OK, OK, OK, OK)),
    ("message.send", {"channel_id": "{CH}", "content": "hi"}, (NF, FB, OK, OK, NF)),
    ("message.send", {"channel_id": "{PC}", "content": "hi"}, (NF, FB, OK, OK, NF)),
    ("message.send", {"channel_id": "{PC2}", "content": "hi"}, (NF, NF, OK, FB, NF)),
    ("message.send", {"channel_id": "{DM}", "content": "hi"}, (NF, NF, OK, NF, NF)),
    ("message.send", {"channel_id": "{CH2}", "content": "hi"}, (OK, NF, NF, NF, NF)),
    ("typing", {"channel_id": "{CH}"}, (NF, FB, OK, OK, NF)),
    ("typing", {"channel_id": "{PC2}"}, (NF, NF, OK, FB, NF)),
    ("typing", {"channel_id": "{DM}"}, (NF, NF, OK, NF, NF)),
    ("call.join", {"channel_id": "{VC}"}, (NF, FB, OK, OK, NF)),
    ("call.join", {"channel_id": "{DM}"}, (NF, NF, OK, NF, NF)),
    (
        "call.signal",
        {"channel_id": "{VC}", "target_user_id": "{bystander_id}", "signal": {}},
        (NIC,) * 5,
    ),
    ("call.leave", {"channel_id": "{VC2}"}, (NIC,) * 5),
]
ROLES = ("outsider", "viewer", "member", "admin", "superuser")


def fill(value, ids):
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    return value


async def test_anonymous_never_gets_a_socket(live, world):
    async with websockets.connect(live.ws_url) as ws:
        await ws.send(
            json.dumps({"type": "subscribe", "ref": 1, "topic": f"workspace:{world.ids['W']}"})
        )
        assert await _closed_with(ws) == 4401


@pytest.mark.parametrize("role", ROLES)
async def test_every_frame_as(role, connect, world):
    ids = dict(world.ids)
    for name in ("VC", "VC2"):
        created = await world.ok(
            "bystander",
            "POST",
            "/api/workspaces/{W}/channels",
            201,
            json={"name": name, "kind": "voice"},
        )
        ids[name] = created["id"]
    client = await connect(role)
    for type_, fields, expected in CASES:
        want = expected[ROLES.index(role)]
        answer = await client.call(type_, **fill(fields, ids))
        got = OK if answer["ok"] else answer["error"]["code"]
        assert got == want, (role, type_, fields, answer)
