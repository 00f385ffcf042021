"""Dapr: publishing events to the sidecar, and commands delivered by it.

A real HTTP server on a free port plays the sidecar's publish API (it records every
request and can be told to refuse); the inbound side is called over ASGI the way daprd
calls the app.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from huddle.app import create_app
from huddle.config import Settings
from huddle.events.bus import BusUnavailable
from huddle.events.dapr import DaprBus
from huddle.events.models import Event, InboundEvent
from huddle.events.schemas import Actor, Envelope
from huddle.tasks.models import Task
from tests.world import World, build_world, events

APP_TOKEN = "app-token-" + "z" * 24
SIDECAR_TOKEN = "sidecar-token-" + "y" * 24


# --- a recording stand-in for the sidecar's HTTP API ------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0  # what the recorder answered

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Recorder:
    """Records requests; answers ``status`` (with ``reply`` as the body)."""

    status: int = 204
    reply: bytes = b""
    requests: list[Recorded] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    url: str = ""

    def record(self, request: Recorded) -> None:
        with self.changed:
            self.requests.append(request)
            self.changed.notify_all()

    async def wait_for(self, predicate: Callable[[list[Recorded]], bool], timeout: float) -> bool:
        def wait() -> bool:
            with self.changed:
                return self.changed.wait_for(lambda: predicate(list(self.requests)), timeout)

        return await asyncio.to_thread(wait)


def _handler(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            headers = {name.lower(): value for name, value in self.headers.items()}
            status = recorder.status
            recorder.record(Recorded("POST", self.path, headers, body, status))
            self.send_response(status)
            self.send_header("Content-Length", str(len(recorder.reply)))
            self.end_headers()
            self.wfile.write(recorder.reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def sidecar() -> Iterator[Recorder]:
    recorder = Recorder()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(recorder))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield recorder
    server.shutdown()
    server.server_close()
    thread.join(5)


def _closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _envelope(seq: int, event_type: str = "task.created", **overrides: Any) -> Envelope:
    fields: dict[str, Any] = {
        "id": seq,
        "type": event_type,
        "topic": "project:0190b8d2-0000-7000-8000-000000000001",
        "workspace_id": uuid.UUID("0190b8d2-0000-7000-8000-000000000002"),
        "subject_id": uuid.UUID("0190b8d2-0000-7000-8000-000000000003"),
        "actor": Actor.user(uuid.UUID("0190b8d2-0000-7000-8000-000000000004")),
        "data": {"id": "0190b8d2-0000-7000-8000-000000000003", "title": "Ship it"},
        "created_at": datetime(2026, 11, 22, 1, 2, 3, 456000, tzinfo=UTC),
    }
    fields.update(overrides)
    return Envelope(**fields)


@pytest.fixture
async def dapr_bus(
    make_settings: Callable[..., Settings], sidecar: Recorder
) -> AsyncIterator[DaprBus]:
    bus = DaprBus(
        make_settings(
            dapr_http_endpoint=sidecar.url + "/",
            dapr_api_token=SIDECAR_TOKEN,
            public_url="https://huddle.example.com/",
        )
    )
    yield bus
    await bus.aclose()


# --- publishing -------------------------------------------------------------------------


class TestPublish:
    async def test_each_event_is_one_cloudevent_on_the_topic_of_its_type(
        self, dapr_bus: DaprBus, sidecar: Recorder
    ) -> None:
        first = _envelope(7)
        second = _envelope(8, "column.created", subject_id=None)
        await dapr_bus.publish([first, second])

        assert [(r.method, r.path) for r in sidecar.requests] == [
            ("POST", "/v1.0/publish/pubsub/task.created"),
            ("POST", "/v1.0/publish/pubsub/column.created"),
        ]
        request = sidecar.requests[0]
        assert request.headers["content-type"] == "application/cloudevents+json"
        assert request.headers["dapr-api-token"] == SIDECAR_TOKEN
        assert request.json() == {
            "specversion": "1.0",
            "id": "7",
            "source": "https://huddle.example.com",
            "type": "task.created",
            "time": "2026-11-22T01:02:03.456000Z",
            "datacontenttype": "application/json",
            "subject": "0190b8d2-0000-7000-8000-000000000003",
            "data": first.model_dump(mode="json"),
        }
        # The envelope travels whole: a consumer rebuilds it from data alone.
        assert Envelope.model_validate(request.json()["data"]) == first
        assert request.json()["data"]["topic"] == first.topic
        assert request.json()["data"]["actor"] == {
            "kind": "user",
            "id": "0190b8d2-0000-7000-8000-000000000004",
        }
        # No subject_id, no subject attribute (CloudEvents: optional, never null).
        later = sidecar.requests[1].json()
        assert "subject" not in later
        assert later["id"] == "8" and later["type"] == "column.created"
        assert Envelope.model_validate(later["data"]) == second

    async def test_no_token_header_without_a_token(
        self, make_settings: Callable[..., Settings], sidecar: Recorder
    ) -> None:
        bus = DaprBus(make_settings(dapr_http_endpoint=sidecar.url, dapr_pubsub_name="events"))
        try:
            await bus.publish([_envelope(1)])
        finally:
            await bus.aclose()
        (request,) = sidecar.requests
        assert request.path == "/v1.0/publish/events/task.created"
        assert "dapr-api-token" not in request.headers
        assert request.json()["source"] == "http://127.0.0.1:8000"

    async def test_200_is_accepted_too(self, dapr_bus: DaprBus, sidecar: Recorder) -> None:
        sidecar.status = 200
        await dapr_bus.publish([_envelope(1), _envelope(2)])
        assert len(sidecar.requests) == 2

    @pytest.mark.parametrize("status", [403, 404, 500, 503])
    async def test_a_refusal_raises_bus_unavailable_and_stops_the_batch(
        self, dapr_bus: DaprBus, sidecar: Recorder, status: int
    ) -> None:
        sidecar.status = status
        sidecar.reply = b'{"errorCode":"ERR_PUBSUB_PUBLISH_MESSAGE","message":"boom"}'
        with pytest.raises(BusUnavailable) as caught:
            await dapr_bus.publish([_envelope(5), _envelope(6)])
        message = str(caught.value)
        assert f"HTTP {status}" in message
        assert "ERR_PUBSUB_PUBLISH_MESSAGE" in message
        assert "event 5 (task.created)" in message
        # Event 6 was never sent: the dispatcher retries the batch from the start.
        assert len(sidecar.requests) == 1

    async def test_a_down_sidecar_raises_bus_unavailable(
        self, make_settings: Callable[..., Settings]
    ) -> None:
        bus = DaprBus(
            make_settings(dapr_http_endpoint=f"http://127.0.0.1:{_closed_port()}", dapr_timeout=2)
        )
        try:
            with pytest.raises(BusUnavailable, match=r"unreachable.*event 3 \(task\.created\)"):
                await bus.publish([_envelope(3)])
        finally:
            await bus.aclose()

    async def test_a_hanging_sidecar_times_out_as_bus_unavailable(
        self, make_settings: Callable[..., Settings]
    ) -> None:
        # Accepts the connection, never answers.
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            port = listener.getsockname()[1]
            bus = DaprBus(
                make_settings(dapr_http_endpoint=f"http://127.0.0.1:{port}", dapr_timeout=0.2)
            )
            try:
                with pytest.raises(BusUnavailable, match="ReadTimeout"):
                    await bus.publish([_envelope(4)])
            finally:
                await bus.aclose()


async def test_the_app_publishes_committed_events_to_the_sidecar(
    make_settings: Callable[..., Settings],
    start_app: Callable[[FastAPI], Any],
    sidecar: Recorder,
) -> None:
    settings = make_settings(
        event_bus="dapr", dapr_http_endpoint=sidecar.url, dapr_api_token=SIDECAR_TOKEN
    )
    app = create_app(settings)
    world = await build_world(await start_app(app), app)
    task = await world.ok(
        "member", "POST", "/api/projects/{P}/tasks", 201, json={"title": "Over Dapr"}
    )

    def published(requests: list[Recorded]) -> bool:
        return any(r.json().get("subject") == task["id"] for r in requests if r.body)

    assert await sidecar.wait_for(published, timeout=10), [r.path for r in sidecar.requests]
    request = next(r for r in sidecar.requests if r.json().get("subject") == task["id"])
    assert request.path == "/v1.0/publish/pubsub/task.created"
    assert request.headers["content-type"] == "application/cloudevents+json"
    assert request.headers["dapr-api-token"] == SIDECAR_TOKEN
    cloud = request.json()
    envelope = cloud["data"]
    assert cloud["id"] == str(envelope["id"]) and cloud["type"] == "task.created"
    assert envelope["topic"] == f"project:{world.ids['P']}"
    assert envelope["actor"] == {"kind": "user", "id": world.ids["member_id"]}
    assert envelope["data"]["title"] == "Over Dapr"
    # The same event, with the same id, as /api/events serves it.
    assert envelope in await events(world, "member", topic=envelope["topic"])
    # Every event reached the sidecar in seq order.
    seqs = [r.json()["data"]["id"] for r in sidecar.requests]
    assert seqs == sorted(seqs)


async def test_a_refusing_sidecar_does_not_hold_back_publishing(
    make_settings: Callable[..., Settings],
    start_app: Callable[[FastAPI], Any],
    sidecar: Recorder,
) -> None:
    """Dapr is fed from published events with its own cursor: while it refuses, events
    are still published (WebSocket relay, /api/events); then it catches up, in order."""
    settings = make_settings(
        event_bus="dapr",
        dapr_http_endpoint=sidecar.url,
        event_poll_interval=0.05,
        event_retry_max=0.1,
    )
    app = create_app(settings)
    world = await build_world(await start_app(app), app)
    forwarder = app.state.events.forwarders[0]
    await app.state.dispatcher.flush()
    latest = max(e["id"] for e in await events(world, "admin"))

    def accepted() -> list[int]:
        """Event ids the sidecar took, each once, in the order first taken."""
        ids = [r.json()["data"]["id"] for r in sidecar.requests if r.status == 204]
        return list(dict.fromkeys(ids))

    await _eventually(lambda: latest in accepted())
    sidecar.status = 500  # the broker behind the sidecar is down
    down = [
        await world.ok("member", "POST", "/api/projects/{P}/tasks", 201, json={"title": f"d{n}"})
        for n in range(3)
    ]
    await app.state.dispatcher.flush()
    published = [e for e in await events(world, "member") if e["type"] == "task.created"]
    assert {t["id"] for t in down} <= {e["subject_id"] for e in published}  # real time went on
    await _eventually(lambda: forwarder.bus_error is not None)
    sidecar.status = 204
    await _eventually(lambda: forwarder.bus_error is None)
    taken = accepted()
    assert {t["id"] for t in down} <= {
        r.json().get("subject") for r in sidecar.requests if r.status == 204
    }
    assert taken == list(range(1, taken[-1] + 1))  # in seq order (after dedupe), no gap


async def _eventually(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


# --- inbound commands -------------------------------------------------------------------


@pytest.fixture
async def world(
    make_settings: Callable[..., Settings], start_app: Callable[[FastAPI], Any]
) -> World:
    app = create_app(make_settings(dapr_app_api_token=APP_TOKEN))
    return await build_world(await start_app(app), app)


def _command(data: Any, *, event_id: str = "cmd-1", type_: str = "huddle.task.create") -> dict:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "billing-service",
        "type": type_,
        "datacontenttype": "application/json",
        # What daprd adds when it delivers.
        "topic": "huddle-commands",
        "pubsubname": "pubsub",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "data": data,
    }


async def _deliver(
    world: World, body: Any, *, token: str | None = APP_TOKEN, raw: bytes | None = None
) -> httpx.Response:
    headers = {"Content-Type": "application/cloudevents+json"}
    if token is not None:
        headers["dapr-api-token"] = token
    content = raw if raw is not None else json.dumps(body).encode()
    return await world.client.post("/dapr/inbound", content=content, headers=headers)


async def _tasks_titled(world: World, title: str) -> list[Task]:
    async with world.app.state.db.read_session() as session:
        return list(await session.scalars(select(Task).where(Task.title == title)))


async def _inbound_count(world: World) -> int:
    async with world.app.state.db.read_session() as session:
        return len(list(await session.scalars(select(InboundEvent))))


class TestSubscribe:
    async def test_subscribes_to_the_inbound_topic(self, world: World) -> None:
        response = await world.client.get("/dapr/subscribe")
        assert response.status_code == 200
        assert response.json() == [
            {"pubsubname": "pubsub", "topic": "huddle-commands", "route": "/dapr/inbound"}
        ]

    async def test_subscribes_to_nothing_without_an_app_token(
        self, make_settings: Callable[..., Settings], start_app: Callable[[FastAPI], Any]
    ) -> None:
        client = await start_app(create_app(make_settings()))
        response = await client.get("/dapr/subscribe")
        assert response.status_code == 200
        assert response.json() == []

    async def test_settings_name_the_pubsub_and_topic(
        self, make_settings: Callable[..., Settings], start_app: Callable[[FastAPI], Any]
    ) -> None:
        settings = make_settings(
            dapr_app_api_token=APP_TOKEN, dapr_pubsub_name="bus", dapr_inbound_topic="todo"
        )
        client = await start_app(create_app(settings))
        assert (await client.get("/dapr/subscribe")).json() == [
            {"pubsubname": "bus", "topic": "todo", "route": "/dapr/inbound"}
        ]

    async def test_dapr_routes_stay_out_of_the_public_schema(self, world: World) -> None:
        paths = world.app.openapi()["paths"]
        assert not [path for path in paths if path.startswith("/dapr")]


class TestInboundAuth:
    async def test_disabled_without_an_app_token(
        self, make_settings: Callable[..., Settings], start_app: Callable[[FastAPI], Any]
    ) -> None:
        app = create_app(make_settings())
        world = await build_world(await start_app(app), app)
        response = await _deliver(world, _command({"project_id": world.ids["P"], "title": "x"}))
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
        assert await _tasks_titled(world, "x") == []

    @pytest.mark.parametrize("token", [None, "", "wrong", APP_TOKEN + "x", APP_TOKEN[:-1]])
    async def test_missing_or_wrong_token_is_401(self, world: World, token: str | None) -> None:
        response = await _deliver(
            world, _command({"project_id": world.ids["P"], "title": "Sneaky"}), token=token
        )
        assert response.status_code == 401
        body = response.json()
        assert body["code"] == "not_authenticated"
        assert set(body) <= {"error", "code", "details"}
        assert await _tasks_titled(world, "Sneaky") == []
        assert await _inbound_count(world) == 0

    async def test_a_non_ascii_token_is_401_not_500(self, world: World) -> None:
        response = await world.client.post(
            "/dapr/inbound",
            content=b"{}",
            headers=[(b"dapr-api-token", "tökén".encode())],
        )
        assert response.status_code == 401


class TestTaskCreateCommand:
    async def test_creates_one_task_as_the_system(self, world: World) -> None:
        data = {
            "project_id": world.ids["P"],
            "title": "From billing",
            "description": "Invoice 42 bounced",
            "priority": "high",
            "assignee_id": world.ids["member_id"],
            "column_id": world.ids["C_doing"],
            "due_date": "2026-12-24",
        }
        response = await _deliver(world, _command(data))
        assert response.status_code == 200
        assert response.json() == {"status": "SUCCESS"}

        (task,) = await _tasks_titled(world, "From billing")
        assert str(task.project_id) == world.ids["P"]
        assert str(task.column_id) == world.ids["C_doing"]
        assert str(task.assignee_id) == world.ids["member_id"]
        assert task.creator_id is None
        assert task.description == "Invoice 42 bounced"
        assert task.priority == "high"
        assert task.due_date is not None and task.due_date.isoformat() == "2026-12-24"

        async with world.app.state.db.read_session() as session:
            (event,) = await session.scalars(select(Event).where(Event.subject_id == task.id))
            (claim,) = await session.scalars(select(InboundEvent))
        assert event.type == "task.created"
        assert event.actor == {"kind": "system"}
        assert event.topic == f"project:{world.ids['P']}"
        assert event.data["title"] == "From billing" and event.data["status"] == "in_progress"
        assert (claim.source, claim.event_id, claim.type) == (
            "billing-service",
            "cmd-1",
            "huddle.task.create",
        )
        # Project members see it in their feed, with the system as the actor.
        feed = await events(world, "member", topic=event.topic)
        (seen,) = [e for e in feed if e["subject_id"] == str(task.id)]
        assert seen["actor"] == {"kind": "system"}

    async def test_private_projects_default_to_the_first_column(self, world: World) -> None:
        response = await _deliver(world, _command({"project_id": world.ids["Q"], "title": "Min"}))
        assert response.json() == {"status": "SUCCESS"}
        (task,) = await _tasks_titled(world, "Min")
        first = (await world.ok("admin", "GET", "/api/projects/{Q}/columns"))[0]
        assert str(task.project_id) == world.ids["Q"]
        assert str(task.column_id) == first["id"]
        assert (task.creator_id, task.assignee_id, task.description) == (None, None, "")

    async def test_a_redelivery_creates_nothing_and_succeeds(self, world: World) -> None:
        command = _command({"project_id": world.ids["P"], "title": "Once"})
        assert (await _deliver(world, command)).json() == {"status": "SUCCESS"}
        async with world.app.state.db.read_session() as session:
            events_before = len(list(await session.scalars(select(Event))))

        again = await _deliver(world, command)
        assert again.status_code == 200
        assert again.json() == {"status": "SUCCESS"}
        assert len(await _tasks_titled(world, "Once")) == 1
        assert await _inbound_count(world) == 1
        async with world.app.state.db.read_session() as session:
            assert len(list(await session.scalars(select(Event)))) == events_before

    async def test_same_id_from_another_source_is_another_command(self, world: World) -> None:
        command = _command({"project_id": world.ids["P"], "title": "Twice"})
        await _deliver(world, command)
        await _deliver(world, {**command, "source": "crm-service"})
        assert len(await _tasks_titled(world, "Twice")) == 2
        assert await _inbound_count(world) == 2

    async def test_concurrent_redeliveries_create_one_task(self, world: World) -> None:
        command = _command({"project_id": world.ids["P"], "title": "Racy"}, event_id="race")
        answers = await asyncio.gather(*(_deliver(world, command) for _ in range(4)))
        assert [a.json() for a in answers] == [{"status": "SUCCESS"}] * 4
        assert len(await _tasks_titled(world, "Racy")) == 1

    @pytest.mark.parametrize(
        "data",
        [
            None,
            "not an object",
            {"title": "No project"},
            {"project_id": "not-a-uuid", "title": "Bad id"},
            {"project_id": "{P}", "title": ""},
            {"project_id": "{P}", "title": "Bad priority", "priority": "asap"},
            {"project_id": "{P}", "title": "Extra", "creator_id": "{admin_id}"},
            {"project_id": "{P}", "title": "Nul\x00"},
        ],
    )
    async def test_invalid_data_is_dropped(self, world: World, data: Any) -> None:
        if isinstance(data, dict):
            data = {k: v.format(**world.ids) if isinstance(v, str) else v for k, v in data.items()}
        response = await _deliver(world, _command(data))
        assert response.status_code == 200
        assert response.json() == {"status": "DROP"}
        assert await _inbound_count(world) == 0
        async with world.app.state.db.read_session() as session:
            assert len(list(await session.scalars(select(Task)))) == 2  # the world's TK and QT

    @pytest.mark.parametrize(
        ("data", "reason"),
        [
            ({"project_id": "0190b8d2-0000-7000-8000-0000000000ff"}, "Project not found"),
            ({"project_id": "{P}", "column_id": "{C}", "assignee_id": "{outsider_id}"}, "assignee"),
            ({"project_id": "{P2}", "column_id": "{C}"}, "No such column"),
        ],
    )
    async def test_commands_that_cannot_succeed_are_dropped(
        self, world: World, data: dict[str, str], reason: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        data = {k: v.format(**world.ids) for k, v in data.items()}
        response = await _deliver(world, _command({**data, "title": "Doomed"}))
        assert response.status_code == 200
        assert response.json() == {"status": "DROP"}
        assert await _tasks_titled(world, "Doomed") == []
        assert await _inbound_count(world) == 0
        assert any(
            r.levelname == "WARNING" and reason in r.getMessage() and "cmd-1" in r.getMessage()
            for r in caplog.records
        )

    async def test_archived_and_deleted_projects_are_dropped(self, world: World) -> None:
        await world.ok("admin", "PATCH", "/api/projects/{P}", json={"archived": True})
        await world.ok("admin", "DELETE", "/api/projects/{Q}", 204)
        for event_id, pid in (("a", world.ids["P"]), ("d", world.ids["Q"])):
            response = await _deliver(
                world, _command({"project_id": pid, "title": "Gone"}, event_id=event_id)
            )
            assert response.json() == {"status": "DROP"}
        assert await _tasks_titled(world, "Gone") == []

    @pytest.mark.parametrize(
        "body",
        [
            {"specversion": "1.0", "id": "x", "source": "s", "type": "huddle.task.delete"},
            {"specversion": "0.3", "id": "x", "source": "s", "type": "huddle.task.create"},
            {"specversion": "1.0", "source": "s", "type": "huddle.task.create"},
            {"specversion": "1.0", "id": "x" * 301, "source": "s", "type": "huddle.task.create"},
            {"specversion": "1.0", "id": "", "source": "s", "type": "huddle.task.create"},
            [1, 2, 3],
        ],
    )
    async def test_unknown_types_and_non_cloudevents_are_dropped(
        self, world: World, body: Any
    ) -> None:
        response = await _deliver(world, body)
        assert response.status_code == 200
        assert response.json() == {"status": "DROP"}
        assert await _inbound_count(world) == 0

    async def test_a_body_that_is_not_json_is_dropped(self, world: World) -> None:
        response = await _deliver(world, None, raw=b"\xff not json")
        assert response.status_code == 200
        assert response.json() == {"status": "DROP"}

    async def test_a_plain_json_delivery_works_too(self, world: World) -> None:
        response = await world.client.post(
            "/dapr/inbound",
            json=_command({"project_id": world.ids["P"], "title": "Plain"}),
            headers={"dapr-api-token": APP_TOKEN},
        )
        assert response.json() == {"status": "SUCCESS"}
        assert len(await _tasks_titled(world, "Plain")) == 1

    async def test_a_database_failure_answers_retry(
        self, world: World, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from sqlalchemy.exc import OperationalError

        from huddle.events import commands

        async def broken(*args: Any, **kwargs: Any) -> None:
            raise OperationalError("INSERT INTO tasks ...", {}, Exception("server closed"))

        monkeypatch.setitem(
            commands.COMMANDS, "huddle.task.create", (commands.TaskCreateCommand, broken)
        )
        response = await _deliver(world, _command({"project_id": world.ids["P"], "title": "Later"}))
        assert response.status_code == 200
        assert response.json() == {"status": "RETRY"}
        # Nothing was kept: the next delivery does the work.
        assert await _inbound_count(world) == 0
        monkeypatch.undo()
        response = await _deliver(world, _command({"project_id": world.ids["P"], "title": "Later"}))
        assert response.json() == {"status": "SUCCESS"}
        assert len(await _tasks_titled(world, "Later")) == 1
