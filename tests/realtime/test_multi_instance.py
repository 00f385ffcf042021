"""Two server processes sharing one database and Redis: a message sent through one
reaches a socket on the other, and a client that moves to the other resumes without a
gap. (The real ``huddle serve``, twice, on different ports.)"""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from tests.e2e.server import Server, huddle_env
from tests.realtime.wsclient import Client, is_event

PASSWORD = "a long password"


@pytest.fixture
async def pair(tmp_path, database_url, redis_settings):
    env = huddle_env(
        tmp_path,
        database_url=database_url,
        secret_key="multi-instance-secret-" + "x" * 32,
        rate_messages="1000/1m",
        **redis_settings,
    )
    servers = [Server(env, tmp_path), Server(env, tmp_path)]
    try:
        await asyncio.gather(*(asyncio.to_thread(s.wait_ready) for s in servers))
        yield servers
    finally:
        for server in servers:
            server.stop()


async def _user(http: httpx.AsyncClient, name: str) -> tuple[str, str]:
    created = await http.post(
        "/api/auth/register",
        json={"email": f"{name}@example.com", "username": name, "password": PASSWORD},
    )
    assert created.status_code == 201, created.text
    token = await http.post("/api/auth/token", data={"username": name, "password": PASSWORD})
    return created.json()["id"], token.json()["access_token"]


async def test_events_and_typing_cross_processes_and_resume_on_the_other(pair):
    a, b = pair
    async with httpx.AsyncClient(base_url=a.url, timeout=10) as http:
        _alice_id, alice = await _user(http, f"alice{uuid.uuid4().hex[:6]}")
        bob_id, bob = await _user(http, f"bob{uuid.uuid4().hex[:6]}")
        auth = {"Authorization": f"Bearer {alice}"}
        ws = (await http.post("/api/workspaces", json={"name": "Two"}, headers=auth)).json()
        added = await http.post(
            f"/api/workspaces/{ws['id']}/members", json={"user_id": bob_id}, headers=auth
        )
        assert added.status_code == 201, added.text
        channel = (
            await http.post(
                f"/api/workspaces/{ws['id']}/channels", json={"name": "both"}, headers=auth
            )
        ).json()
    topic = f"channel:{channel['id']}"
    on_a = await Client.connect(a.url.replace("http", "ws") + "/ws", alice)
    on_b = await Client.connect(b.url.replace("http", "ws") + "/ws", bob)
    try:
        for client in (on_a, on_b):
            await client.ok("subscribe", topic=topic)
        sent = await on_a.ok("message.send", channel_id=channel["id"], content="across")
        arrived = await on_b.event("message.created")
        assert arrived["data"]["id"] == sent["id"]
        await on_b.ok("typing", channel_id=channel["id"])
        typing = await on_a.wait_for(lambda f: f.get("type") == "typing")
        assert typing["user_id"] == bob_id
        # Bob drops off process B; Alice keeps talking; Bob comes back on process A.
        last_seen = arrived["id"]
        await on_b.close()
        missed = [
            (await on_a.ok("message.send", channel_id=channel["id"], content=f"m{n}"))["id"]
            for n in range(5)
        ]
        back = await Client.connect(a.url.replace("http", "ws") + "/ws", bob)
        await back.ok("subscribe", topic=topic)
        resumed = await back.call("resume", since=last_seen)
        assert resumed["ok"] is True, resumed
        got = []
        while len(got) < 5:
            frame = await back.wait_for(is_event("message.created"))
            got.append(frame["event"]["data"]["id"])
        assert got == missed
        assert [f for f in await back.quiet(0.5) if f.get("type") == "event"] == []
        await back.close()
    finally:
        await on_a.close()
