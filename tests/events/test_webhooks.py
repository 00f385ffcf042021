"""Webhooks against a real HTTP receiver: signatures, retries, the log, SSRF refusals."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import func, select

from huddle.app import create_app
from huddle.events import webhook_targets, webhooks
from huddle.events.models import WebhookDelivery
from huddle.events.webhooks import WebhookSender
from tests.helpers import assert_error
from tests.world import World, build_world, events

SECRET = "whsec_" + "k" * 32


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    """An HTTP server on a free local port; answers with ``statuses`` in turn, then 200."""

    statuses: list[int] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.requests.append(
                    Received(
                        self.path, {k.lower(): v for k, v in self.headers.items()}, body, status
                    )
                )
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/huddle"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    server.start()
    yield server
    server.stop()


FAST = {
    "webhook_allow_private": True,
    "webhook_retry_base_s": 0.05,
    "webhook_poll_interval": 0.05,
    "event_poll_interval": 0.05,
}


@pytest.fixture
async def world(make_settings, start_app) -> World:
    app = create_app(make_settings(**FAST))
    client = await start_app(app)
    return await build_world(client, app)


async def _register(world: World, url: str, types: list[str], **extra: Any) -> dict[str, Any]:
    body = {"url": url, "event_types": types, "secret": SECRET, **extra}
    return await world.ok("admin", "POST", "/api/workspaces/{W}/webhooks", 201, json=body)


async def _eventually(check: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def _deliveries(world: World, hook_id: str, **params: Any) -> list[dict[str, Any]]:
    page = await world.ok(
        "admin", "GET", f"/api/workspaces/{{W}}/webhooks/{hook_id}/deliveries", params=params
    )
    return page["items"]


async def _wait_delivery(world: World, hook_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while True:
        items = await _deliveries(world, hook_id)
        done = [d for d in items if d["status"] == status]
        if done:
            return done[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no {status} delivery: {items}")
        await asyncio.sleep(0.05)


async def _all_sent(world: World, timeout: float = 15) -> None:
    """Every event is published and no delivery is still pending."""
    await world.app.state.dispatcher.flush()
    pending = (
        select(func.count()).select_from(WebhookDelivery).where(WebhookDelivery.status == "pending")
    )
    deadline = time.monotonic() + timeout
    while True:
        async with world.app.state.db.read_session() as session:
            if await session.scalar(pending) == 0:
                return
        assert time.monotonic() < deadline, "deliveries still pending"
        await asyncio.sleep(0.05)


def _verify(request: Received, secret: str = SECRET) -> None:
    timestamp = request.headers["huddle-timestamp"]
    expected = hmac.new(
        secret.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(request.headers["huddle-signature"], f"sha256={expected}")
    assert abs(time.time() - int(timestamp)) < 60


async def test_a_receiver_failing_twice_gets_the_event_once_signed(world, receiver):
    hook = await _register(world, receiver.url, ["task.created"])
    assert hook["secret"] == SECRET
    receiver.statuses = [500, 503]
    task = await world.ok("member", "POST", "/api/projects/{P}/tasks", 201, json={"title": "Hook"})
    delivery = await _wait_delivery(world, hook["id"], "succeeded")
    await _all_sent(world)  # nothing is left to send: no request can follow
    assert [r.status for r in receiver.requests] == [500, 503, 200]
    assert [d["id"] for d in await _deliveries(world, hook["id"])] == [delivery["id"]]
    ok = receiver.requests[-1]
    _verify(ok)
    assert ok.path == "/hooks/huddle"
    assert ok.headers["content-type"] == "application/json"
    body = json.loads(ok.body)
    # The envelope is the one /api/events serves, and its id is the delivery's event id.
    feed = {e["id"]: e for e in await events(world, "admin")}
    assert body == feed[body["id"]]
    assert body["type"] == "task.created" and body["subject_id"] == task["id"]
    assert body["actor"] == {"kind": "user", "id": world.ids["member_id"]}
    assert ok.headers["huddle-event-id"] == str(body["id"])
    # Every attempt carried the same event (a receiver dedupes on Huddle-Event-Id).
    assert {r.headers["huddle-event-id"] for r in receiver.requests} == {str(body["id"])}
    assert {r.body for r in receiver.requests} == {ok.body}
    assert delivery["attempts"] == 3
    assert delivery["event_id"] == body["id"] and delivery["event_type"] == "task.created"
    assert delivery["last_status_code"] == 200 and delivery["last_error"] is None
    assert delivery["delivered_at"] is not None


async def test_gives_up_after_the_last_attempt_and_redelivers_on_request(
    make_settings, start_app, receiver
):
    app = create_app(make_settings(**FAST, webhook_max_attempts=3))
    world = await build_world(await start_app(app), app)
    hook = await _register(world, receiver.url, ["task.*"])
    receiver.statuses = [500, 500, 500]
    await world.ok("member", "POST", "/api/projects/{P}/tasks", 201, json={"title": "Doomed"})
    failed = await _wait_delivery(world, hook["id"], "failed")
    assert failed["attempts"] == 3 and failed["last_status_code"] == 500
    assert failed["last_error"] == "HTTP 500" and failed["next_attempt_at"] is None
    assert len(receiver.requests) == 3
    assert await _deliveries(world, hook["id"], status="succeeded") == []
    path = f"/api/workspaces/{{W}}/webhooks/{hook['id']}/deliveries/{failed['id']}/redeliver"
    queued = await world.ok("admin", "POST", path, 202)
    assert queued["status"] == "pending" and queued["attempts"] == 0
    done = await _wait_delivery(world, hook["id"], "succeeded")
    assert done["id"] == failed["id"] and done["attempts"] == 1
    assert len(receiver.requests) == 4
    _verify(receiver.requests[-1])


async def test_events_reach_only_matching_webhooks_of_their_workspace(world, receiver):
    tasks_hook = await _register(world, receiver.url + "?h=tasks", ["task.*"])
    everything = await _register(world, receiver.url + "?h=all", ["*"])
    await _register(world, receiver.url + "?h=off", ["*"], active=False)
    await world.ok(
        "outsider",
        "POST",
        "/api/workspaces/{W2}/webhooks",
        201,
        json={"url": receiver.url + "?h=other", "event_types": ["*"]},
    )
    channel = await world.ok(
        "admin", "POST", "/api/workspaces/{W}/channels", 201, json={"name": "general"}
    )
    private = await world.ok(
        "admin",
        "POST",
        "/api/workspaces/{W}/channels",
        201,
        json={"name": "secret", "is_private": True},
    )
    await world.ok(
        "admin", "POST", f"/api/channels/{channel['id']}/messages", 201, json={"content": "hi"}
    )
    await world.ok(
        "admin", "POST", f"/api/channels/{private['id']}/messages", 201, json={"content": "psst"}
    )
    await world.ok("member", "POST", "/api/projects/{P}/tasks", 201, json={"title": "Mine"})
    await world.ok(
        "admin", "POST", "/api/projects/{Q}/tasks", 201, json={"title": "Private project"}
    )
    await world.ok("outsider", "POST", "/api/projects/{P2}/tasks", 201, json={"title": "Theirs"})

    def got(hook: str) -> list[tuple[str, str]]:
        return [
            (json.loads(r.body)["type"], json.loads(r.body)["topic"])
            for r in receiver.requests
            if r.path.endswith(f"h={hook}")
        ]

    await _all_sent(world)
    assert [t for t, _ in got("tasks")] == ["task.created", "task.created"]
    all_types = [t for t, _ in got("all")]
    # Public channel: yes; private channel (admins are not members): neither its
    # creation nor its message; the private project Q: yes (admins read every project).
    assert ("message.created", f"channel:{channel['id']}") in got("all")
    assert all(private["id"] not in topic for _, topic in got("all"))
    assert all_types.count("task.created") == 2
    assert "webhook.created" in all_types  # the later webhooks' own events are admin events
    assert got("off") == []
    assert all(
        json.loads(r.body)["workspace_id"] == world.ids["W2"]
        for r in receiver.requests
        if r.path.endswith("h=other")
    )
    # Per webhook, events arrive in seq order.
    ids = [json.loads(r.body)["id"] for r in receiver.requests if r.path.endswith("h=all")]
    assert ids == sorted(ids)
    assert tasks_hook["id"] != everything["id"]


async def test_ping_reports_the_receivers_answer(world, receiver):
    hook = await _register(world, receiver.url, ["task.created"])
    ping = await world.ok("admin", "POST", f"/api/workspaces/{{W}}/webhooks/{hook['id']}/test")
    assert ping["status"] == "succeeded" and ping["event_type"] == "webhook.test"
    assert ping["event_id"] is None and ping["last_status_code"] == 200
    request = receiver.requests[-1]
    _verify(request)
    body = json.loads(request.body)
    assert body["id"] == 0 and body["type"] == "webhook.test"
    assert body["data"] == {"webhook_id": hook["id"]}
    assert body["actor"] == {"kind": "user", "id": world.ids["admin_id"]}
    receiver.statuses = [503]
    ping = await world.ok("admin", "POST", f"/api/workspaces/{{W}}/webhooks/{hook['id']}/test")
    assert ping["status"] == "failed" and ping["last_status_code"] == 503
    assert ping["attempts"] == 1  # a ping is not retried
    log = await _deliveries(world, hook["id"])
    assert [d["event_type"] for d in log] == ["webhook.test", "webhook.test"]


async def test_manage_webhooks(world, receiver):
    hook = await _register(world, receiver.url, ["task.created", "task.created", "message.*"])
    assert hook["event_types"] == ["task.created", "message.*"]
    assert hook["active"] is True and hook["created_by"] == world.ids["admin_id"]
    shown = await world.ok("admin", "GET", f"/api/workspaces/{{W}}/webhooks/{hook['id']}")
    assert "secret" not in shown
    listed = await world.ok("admin", "GET", "/api/workspaces/{W}/webhooks")
    assert [h["id"] for h in listed["items"]] == [hook["id"]] and "secret" not in listed["items"][0]
    generated = await world.ok(
        "admin",
        "POST",
        "/api/workspaces/{W}/webhooks",
        201,
        json={"url": receiver.url, "event_types": ["*"]},
    )
    assert generated["secret"].startswith("whsec_") and len(generated["secret"]) > 40
    updated = await world.ok(
        "admin",
        "PATCH",
        f"/api/workspaces/{{W}}/webhooks/{hook['id']}",
        json={"event_types": ["project.*"], "active": False, "description": "ops"},
    )
    assert updated["event_types"] == ["project.*"] and updated["active"] is False
    assert updated["description"] == "ops"
    # The change went out as an admin-only event (its data never holds the secret).
    admin_view = [e for e in await events(world, "admin") if e["type"].startswith("webhook.")]
    assert [e["type"] for e in admin_view] == [
        "webhook.created",
        "webhook.created",
        "webhook.updated",
    ]
    assert all("secret" not in e["data"] and "url" not in e["data"] for e in admin_view)
    # Only the URL's origin: a path may hold a token (Slack-style incoming webhooks).
    assert admin_view[0]["data"]["url_origin"] == f"http://127.0.0.1:{receiver.port}"
    assert admin_view[0]["topic"] == f"workspace:{world.ids['W']}:admin"
    assert not [e for e in await events(world, "member") if e["type"].startswith("webhook.")]
    await world.ok("admin", "DELETE", f"/api/workspaces/{{W}}/webhooks/{hook['id']}", 204)
    gone = await world.call("admin", "GET", f"/api/workspaces/{{W}}/webhooks/{hook['id']}")
    assert_error(gone, 404, "not_found")


@pytest.mark.parametrize(
    "body,field_name",
    [
        ({"url": "http://x.example", "event_types": ["nope.created"]}, "event_types"),
        ({"url": "http://x.example", "event_types": []}, "event_types"),
        ({"url": "http://x.example", "event_types": ["*"], "secret": "short"}, "secret"),
        ({"url": "", "event_types": ["*"]}, "url"),
        ({"event_types": ["*"]}, "url"),
        ({"url": "http://x.example", "event_types": ["*"], "extra": 1}, "extra"),
    ],
)
async def test_bad_webhook_input_is_422(world, body, field_name):
    response = await world.call("admin", "POST", "/api/workspaces/{W}/webhooks", json=body)
    assert_error(response, 422, "validation_error")
    assert field_name in json.dumps(response.json()["details"])


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://api.localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.1.10/hook",
        "http://172.16.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://100.64.0.1/hook",
        "http://0.0.0.0/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[fe80::1]/hook",
        "http://[fd00::1]/hook",
        "http://224.0.0.1/hook",
        "ftp://93.184.216.34/hook",
        "http://user:pass@93.184.216.34/hook",
        "not a url",
    ],
)
async def test_private_and_malformed_urls_are_refused(make_settings, start_app, url):
    app = create_app(make_settings())  # HUDDLE_WEBHOOK_ALLOW_PRIVATE off (the default)
    world = await build_world(await start_app(app), app)
    response = await world.call(
        "admin", "POST", "/api/workspaces/{W}/webhooks", json={"url": url, "event_types": ["*"]}
    )
    assert_error(response, 422, "webhook_url_refused")
    listed = await world.ok("admin", "GET", "/api/workspaces/{W}/webhooks")
    assert listed["items"] == []


async def test_dns_rebinding_is_caught_at_delivery(make_settings, start_app, receiver, monkeypatch):
    """The name resolved to a public address when saved, to loopback when sending."""
    answers = {"hooks.example.test": ["93.184.216.34"]}

    async def fake_resolve(host: str, port: int) -> list[str]:
        return answers[host]

    monkeypatch.setattr(webhook_targets, "resolve_host", fake_resolve)
    settings = {k: v for k, v in FAST.items() if k != "webhook_allow_private"}
    app = create_app(make_settings(**settings, webhook_max_attempts=1))
    world = await build_world(await start_app(app), app)
    url = f"http://hooks.example.test:{receiver.port}/hooks/huddle"
    hook = await _register(world, url, ["task.created"])
    answers["hooks.example.test"] = ["127.0.0.1"]
    await world.ok("member", "POST", "/api/projects/{P}/tasks", 201, json={"title": "Rebind"})
    failed = await _wait_delivery(world, hook["id"], "failed")
    assert "127.0.0.1" in failed["last_error"] and failed["last_status_code"] is None
    assert receiver.requests == []
    # PATCHing the URL is checked too.
    response = await world.call(
        "admin", "PATCH", f"/api/workspaces/{{W}}/webhooks/{hook['id']}", json={"url": url}
    )
    assert_error(response, 422, "webhook_url_refused")


async def test_the_request_goes_to_the_checked_address_with_the_hosts_name(
    make_settings, start_app, receiver, monkeypatch
):
    """Connect to the address that passed the check, not to a second DNS answer."""
    calls: list[str] = []

    async def fake_resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"]

    monkeypatch.setattr(webhook_targets, "resolve_host", fake_resolve)
    monkeypatch.setattr(webhook_targets, "refused_address", lambda address: False)
    settings = {k: v for k, v in FAST.items() if k != "webhook_allow_private"}
    app = create_app(make_settings(**settings))
    world = await build_world(await start_app(app), app)
    # The name does not exist in real DNS: only the checked address can be reached.
    url = f"http://hooks.example.test:{receiver.port}/hooks/huddle"
    hook = await _register(world, url, ["task.created"])
    await world.ok("member", "POST", "/api/projects/{P}/tasks", 201, json={"title": "Pinned"})
    await _wait_delivery(world, hook["id"], "succeeded")
    assert receiver.requests[-1].headers["host"] == f"hooks.example.test:{receiver.port}"
    assert calls.count("hooks.example.test") >= 2  # when saved, and again when sent


async def test_a_timeout_is_a_failed_attempt(make_settings, start_app):
    """A receiver that accepts the connection and never answers."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        app = create_app(make_settings(**FAST, webhook_timeout=0.3, webhook_max_attempts=1))
        world = await build_world(await start_app(app), app)
        port = listener.getsockname()[1]
        hook = await _register(world, f"http://127.0.0.1:{port}/slow", ["task.created"])
        await world.ok("member", "POST", "/api/projects/{P}/tasks", 201, json={"title": "Slow"})
        failed = await _wait_delivery(world, hook["id"], "failed")
        assert failed["last_error"] == "timed out after 0.3 s"
    finally:
        listener.close()


def test_signature_matches_the_documented_recipe():
    body = b'{"id":1}'
    expected = hmac.new(b"secret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert webhooks.sign("secret", "1700000000", body) == f"sha256={expected}"


@pytest.mark.parametrize(
    "address,refused",
    [
        ("8.8.8.8", False),
        ("2606:4700:4700::1111", False),
        ("127.0.0.1", True),
        ("::ffff:10.0.0.1", True),
        ("2002:7f00:1::", True),  # 6to4 wrapping 127.0.0.1
        ("::", True),
        ("240.0.0.1", True),
        ("fec0::1", True),  # deprecated IPv6 site-local
    ],
)
def test_refused_addresses(address, refused):
    import ipaddress

    assert webhook_targets.refused_address(ipaddress.ip_address(address)) is refused


async def test_two_senders_never_post_the_same_delivery(make_settings, start_app, receiver):
    """Every API process and worker runs a sender: claims keep them apart, and one
    webhook's events still go out one at a time, in seq order."""
    settings = make_settings(**FAST)
    app = create_app(settings)
    world = await build_world(await start_app(app), app)
    await app.state.events.sender.stop()  # only the two senders below
    hook = await _register(world, receiver.url, ["task.created"])
    for n in range(8):
        await world.ok("member", "POST", "/api/projects/{P}/tasks", 201, json={"title": f"{n}"})
    await app.state.dispatcher.flush()
    senders = [WebhookSender(app.state.db, settings) for _ in range(2)]

    async def drain(sender: WebhookSender) -> None:
        while await sender.send_due():
            pass

    try:
        await asyncio.gather(*(drain(s) for s in senders))
    finally:
        for sender in senders:
            await sender.stop()
    ids = [int(r.headers["huddle-event-id"]) for r in receiver.requests]
    assert len(ids) == 8 and ids == sorted(set(ids))
    log = await _deliveries(world, hook["id"], limit=50)
    assert [d["attempts"] for d in log] == [1] * 8
    assert {d["status"] for d in log} == {"succeeded"}


async def test_the_answer_body_is_never_read(world):
    """A receiver that answers 200 and then streams its body forever (or a huge one)."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
            while not stop.is_set():
                try:
                    conn.sendall(b"x" * 1024)
                except OSError:
                    return
                stop.wait(0.05)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        port = listener.getsockname()[1]
        hook = await _register(world, f"http://127.0.0.1:{port}/endless", ["task.created"])
        await world.ok("member", "POST", "/api/projects/{P}/tasks", 201, json={"title": "Big"})
        done = await _wait_delivery(world, hook["id"], "succeeded")
        assert done["last_status_code"] == 200 and done["last_duration_ms"] < 5000
    finally:
        stop.set()
        listener.close()
