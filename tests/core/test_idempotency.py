"""Idempotent POSTs: the ``Idempotency-Key`` header (core/idempotency.py)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi import Response
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy import func, select, update

from huddle.app import create_app
from huddle.auth.models import User
from huddle.core import idempotency
from huddle.core.idempotency import prune_expired
from huddle.core.idempotency_models import IdempotencyKey
from huddle.core.time import utcnow
from huddle.tasks.models import Task
from tests.helpers import assert_error
from tests.world import World, add_user, build_world

TASKS = "/api/projects/{P}/tasks"
REPLAYED = "Idempotent-Replayed"


@pytest.fixture
async def world(client, app) -> World:
    return await build_world(client, app)


async def _tasks(app, title: str) -> int:
    async with app.state.db.read_session() as session:
        return int(
            await session.scalar(select(func.count()).select_from(Task).where(Task.title == title))
        )


async def _keys(app) -> list[IdempotencyKey]:
    async with app.state.db.read_session() as session:
        return list((await session.scalars(select(IdempotencyKey))).all())


def _key(value: str | bytes) -> dict[str, Any]:
    return {"Idempotency-Key": value}


def _raw(body: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """A JSON body as exact bytes (so a test knows its hash) and its content type."""
    return json.dumps(body).encode(), {"content-type": "application/json"}


async def _insert_key(app, user_id: str, route: str, key: str, **fields: Any) -> None:
    now = utcnow()
    values: dict[str, Any] = {
        "request_hash": "0" * 64,
        "created_at": now,
        "expires_at": now + timedelta(hours=24),
        **fields,
    }
    async with app.state.db.write_session() as session:
        session.add(IdempotencyKey(user_id=uuid.UUID(user_id), route=route, key=key, **values))
        await session.commit()


# --- the retry ----------------------------------------------------------------------------


async def test_retry_with_the_same_key_and_body_replays_the_first_answer(world, app):
    body = {"title": "Once"}
    first = await world.call("member", "POST", TASKS, json=body, headers=_key("k-1"))
    second = await world.call("member", "POST", TASKS, json=body, headers=_key("k-1"))

    assert first.status_code == 201, first.text
    assert REPLAYED not in first.headers
    assert second.status_code == 201
    assert second.headers[REPLAYED] == "true"
    assert second.content == first.content
    assert second.headers["content-type"] == first.headers["content-type"]
    assert second.headers["X-Request-ID"]  # still inside RequestContextMiddleware
    assert second.headers["X-Request-ID"] != first.headers["X-Request-ID"]
    assert await _tasks(app, "Once") == 1
    [row] = await _keys(app)
    assert row.route == "POST /api/projects/{}/tasks".format(world.ids["P"])
    assert row.user_id == world.ids_uuid("member_id")
    assert row.status_code == 201
    assert row.response_body == first.content
    ttl = row.expires_at - row.created_at
    assert timedelta(hours=24) - timedelta(seconds=5) < ttl <= timedelta(hours=24)


async def test_same_key_with_another_body_is_422_and_writes_nothing(world, app):
    first = await world.call("member", "POST", TASKS, json={"title": "A"}, headers=_key("k"))
    other = await world.call("member", "POST", TASKS, json={"title": "B"}, headers=_key("k"))

    assert first.status_code == 201
    assert_error(other, 422, "idempotency_key_reused")
    assert REPLAYED not in other.headers
    assert await _tasks(app, "A") == 1
    assert await _tasks(app, "B") == 0


async def test_same_key_of_another_user_is_independent(world, app):
    body = {"title": "Shared key"}
    mine = await world.call("member", "POST", TASKS, json=body, headers=_key("k"))
    theirs = await world.call("admin", "POST", TASKS, json=body, headers=_key("k"))

    assert mine.status_code == theirs.status_code == 201
    assert REPLAYED not in theirs.headers
    assert mine.json()["id"] != theirs.json()["id"]
    assert await _tasks(app, "Shared key") == 2
    assert len(await _keys(app)) == 2


async def test_same_key_on_another_route_is_independent(world, app):
    body = {"title": "Two places"}
    in_p = await world.call("admin", "POST", TASKS, json=body, headers=_key("k"))
    in_q = await world.call(
        "admin", "POST", "/api/projects/{Q}/tasks", json=body, headers=_key("k")
    )

    assert in_p.status_code == in_q.status_code == 201
    assert REPLAYED not in in_q.headers
    assert in_p.json()["project_id"] == world.ids["P"]
    assert in_q.json()["project_id"] == world.ids["Q"]
    assert await _tasks(app, "Two places") == 2


async def test_a_failed_request_does_not_hold_the_key(world, app):
    invalid = await world.call("member", "POST", TASKS, json={}, headers=_key("k"))
    assert_error(invalid, 422, "validation_error")
    assert await _keys(app) == []

    fixed = await world.call("member", "POST", TASKS, json={"title": "Fixed"}, headers=_key("k"))
    assert fixed.status_code == 201, fixed.text
    assert REPLAYED not in fixed.headers
    assert await _tasks(app, "Fixed") == 1


async def test_a_refused_request_does_not_hold_the_key(world, app):
    """A 404 (not a member) is a failure like any other: the key is released."""
    body = {"title": "Not yours"}
    refused = await world.call("outsider", "POST", TASKS, json=body, headers=_key("k"))
    assert_error(refused, 404, "not_found")
    again = await world.call("outsider", "POST", TASKS, json=body, headers=_key("k"))
    assert_error(again, 404, "not_found")
    assert REPLAYED not in again.headers
    assert await _keys(app) == []
    assert await _tasks(app, "Not yours") == 0


async def test_concurrent_duplicates_write_once(world, app):
    body = {"title": "Raced"}
    answers = await asyncio.gather(
        *(world.call("member", "POST", TASKS, json=body, headers=_key("race")) for _ in range(2))
    )

    assert await _tasks(app, "Raced") == 1
    firsts = [a for a in answers if a.status_code == 201 and REPLAYED not in a.headers]
    assert len(firsts) == 1, [(a.status_code, a.text) for a in answers]
    [other] = [a for a in answers if a is not firsts[0]]
    if other.status_code == 409:
        assert_error(other, 409, "idempotency_key_in_use")
        assert other.headers["Retry-After"] == "1"
    else:
        assert other.status_code == 201
        assert other.headers[REPLAYED] == "true"
        assert other.content == firsts[0].content


async def test_a_key_still_in_flight_is_409_with_retry_after(world, app):
    content, headers = _raw({"title": "In flight"})
    await _insert_key(
        app,
        world.ids["member_id"],
        "POST /api/projects/{}/tasks".format(world.ids["P"]),
        "busy",
        request_hash=hashlib.sha256(content).hexdigest(),
    )
    response = await world.call(
        "member", "POST", TASKS, content=content, headers={**headers, **_key("busy")}
    )

    assert_error(response, 409, "idempotency_key_in_use")
    assert response.headers["Retry-After"] == "1"
    assert await _tasks(app, "In flight") == 0
    [row] = await _keys(app)
    assert row.status_code is None  # still the other request's


async def test_an_abandoned_claim_is_taken_over_after_the_lock_timeout(world, app):
    content, headers = _raw({"title": "Orphan"})
    started = utcnow() - idempotency.LOCK_TIMEOUT - timedelta(seconds=1)
    await _insert_key(
        app,
        world.ids["member_id"],
        "POST /api/projects/{}/tasks".format(world.ids["P"]),
        "crashed",
        request_hash=hashlib.sha256(content).hexdigest(),
        created_at=started,
    )
    response = await world.call(
        "member", "POST", TASKS, content=content, headers={**headers, **_key("crashed")}
    )

    assert response.status_code == 201, response.text
    assert REPLAYED not in response.headers
    assert await _tasks(app, "Orphan") == 1
    [row] = await _keys(app)
    assert row.status_code == 201
    assert row.created_at > started + timedelta(seconds=1)


async def test_an_abandoned_claim_with_another_body_is_still_refused(world, app):
    content, headers = _raw({"title": "Other body"})
    await _insert_key(
        app,
        world.ids["member_id"],
        "POST /api/projects/{}/tasks".format(world.ids["P"]),
        "crashed",
        created_at=utcnow() - timedelta(hours=1),
    )
    response = await world.call(
        "member", "POST", TASKS, content=content, headers={**headers, **_key("crashed")}
    )
    assert_error(response, 422, "idempotency_key_reused")
    assert await _tasks(app, "Other body") == 0


async def test_an_expired_key_writes_again(world, app):
    body = {"title": "Tomorrow again"}
    first = await world.call("member", "POST", TASKS, json=body, headers=_key("daily"))
    assert first.status_code == 201
    async with app.state.db.write_session() as session:
        await session.execute(
            update(IdempotencyKey).values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()

    second = await world.call("member", "POST", TASKS, json=body, headers=_key("daily"))

    assert second.status_code == 201
    assert REPLAYED not in second.headers
    assert second.json()["id"] != first.json()["id"]
    assert await _tasks(app, "Tomorrow again") == 2
    [row] = await _keys(app)
    assert row.expires_at > utcnow()


async def test_the_ttl_is_a_setting(make_settings, start_app):
    app = create_app(make_settings(idempotency_ttl=120))
    client = await start_app(app)
    world = await build_world(client, app)
    response = await world.call("member", "POST", TASKS, json={"title": "T"}, headers=_key("k"))
    assert response.status_code == 201
    [row] = await _keys(app)
    assert timedelta(seconds=115) < row.expires_at - row.created_at <= timedelta(seconds=120)


# --- who and what is covered ----------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["", " ", "x" * 256, "x" * 300, "clé".encode(), "tab\there"],
    ids=["empty", "blank", "256", "300", "non-ascii", "tab"],
)
async def test_an_invalid_key_is_refused(world, app, key):
    response = await world.call(
        "member", "POST", TASKS, json={"title": "Bad key"}, headers=_key(key)
    )
    assert_error(response, 422, "invalid_idempotency_key")
    assert await _tasks(app, "Bad key") == 0
    assert await _keys(app) == []


async def test_the_longest_valid_key_works(world, app):
    key = "~" + "k ." * 84 + "x!"
    assert len(key) == 255
    response = await world.call("member", "POST", TASKS, json={"title": "Long"}, headers=_key(key))
    assert response.status_code == 201
    [row] = await _keys(app)
    assert row.key == key


async def test_two_key_headers_are_refused(world, app):
    headers = [*world.headers["member"].items(), ("Idempotency-Key", "a"), ("Idempotency-Key", "b")]
    response = await world.client.post(
        TASKS.format(**world.ids), json={"title": "Two keys"}, headers=headers
    )
    assert_error(response, 422, "invalid_idempotency_key")
    assert await _tasks(app, "Two keys") == 0


async def test_anonymous_with_a_key_is_401_as_usual(world, app):
    response = await world.call(
        "anonymous", "POST", TASKS, json={"title": "Anon"}, headers=_key("k")
    )
    assert_error(response, 401, "not_authenticated")
    bad_token = await world.client.post(
        TASKS.format(**world.ids),
        json={"title": "Anon"},
        headers={"Authorization": "Bearer nonsense", **_key("k")},
    )
    assert_error(bad_token, 401, "invalid_token")
    assert await _keys(app) == []
    assert await _tasks(app, "Anon") == 0


async def test_a_deactivated_user_with_a_key_is_401(world, app):
    async with app.state.db.write_session() as session:
        await session.execute(update(User).where(User.username == "member").values(is_active=False))
        await session.commit()
    response = await world.call("member", "POST", TASKS, json={"title": "Gone"}, headers=_key("k"))
    assert_error(response, 401, "invalid_token")
    assert await _keys(app) == []


async def test_without_a_key_nothing_changes(world, app):
    body = {"title": "Twice"}
    first = await world.call("member", "POST", TASKS, json=body)
    second = await world.call("member", "POST", TASKS, json=body)
    assert first.status_code == second.status_code == 201
    assert REPLAYED not in second.headers
    assert first.json()["id"] != second.json()["id"]
    assert await _tasks(app, "Twice") == 2
    assert await _keys(app) == []


async def test_other_methods_ignore_the_key(world, app):
    path = "/api/tasks/{TK}"
    first = await world.call("member", "PATCH", path, json={"title": "P1"}, headers=_key("k"))
    second = await world.call("member", "PATCH", path, json={"title": "P2"}, headers=_key("k"))
    assert first.status_code == second.status_code == 200
    assert second.json()["title"] == "P2"
    assert await _keys(app) == []


async def test_a_personal_api_token_works_too(world, app):
    created = await world.ok("member", "POST", "/api/auth/api-tokens", 201, json={"name": "script"})
    headers = {"Authorization": f"Bearer {created['token']}", **_key("k")}
    path = TASKS.format(**world.ids)
    first = await world.client.post(path, json={"title": "Scripted"}, headers=headers)
    second = await world.client.post(path, json={"title": "Scripted"}, headers=headers)

    assert first.status_code == second.status_code == 201
    assert second.headers[REPLAYED] == "true"
    assert second.content == first.content
    assert await _tasks(app, "Scripted") == 1
    [row] = await _keys(app)
    assert row.user_id == world.ids_uuid("member_id")
    # The same key with the member's access token is the same user: a replay.
    via_jwt = await world.call(
        "member", "POST", TASKS, json={"title": "Scripted"}, headers=_key("k")
    )
    assert via_jwt.headers[REPLAYED] == "true"


async def test_credential_routes_are_never_stored(world, app):
    """API tokens are shown once and kept hashed: their answers are not stored."""
    body = {"name": "ci"}
    first = await world.call("member", "POST", "/api/auth/api-tokens", json=body, headers=_key("k"))
    second = await world.call(
        "member", "POST", "/api/auth/api-tokens", json=body, headers=_key("k")
    )
    assert first.status_code == second.status_code == 201
    assert first.json()["token"] != second.json()["token"]
    assert await _keys(app) == []


# --- bodies -------------------------------------------------------------------------------


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_a_body_in_several_chunks_is_hashed_whole(world, app):
    content, headers = _raw({"title": "Chunked"})
    path = TASKS.format(**world.ids)
    headers = {**world.headers["member"], **headers, **_key("k")}
    first = await world.client.post(
        path, content=_chunks(content[:5], content[5:9], content[9:]), headers=headers
    )
    second = await world.client.post(path, content=content, headers=headers)

    assert first.status_code == 201, first.text
    assert second.headers[REPLAYED] == "true"
    assert second.content == first.content
    assert await _tasks(app, "Chunked") == 1


async def test_a_body_larger_than_the_buffer_passes_through(world, app, monkeypatch):
    monkeypatch.setattr(idempotency, "MAX_BUFFERED_BODY", 8)
    body = {"title": "Too big to hash"}
    first = await world.call("member", "POST", TASKS, json=body, headers=_key("k"))
    second = await world.call("member", "POST", TASKS, json=body, headers=_key("k"))
    assert first.status_code == second.status_code == 201
    assert REPLAYED not in second.headers
    assert await _tasks(app, "Too big to hash") == 2
    assert await _keys(app) == []


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_the_apps_body_limit_still_answers_413(settings, start_app, chunked):
    """Over the app's limit the key changes nothing: the same 413 as without it."""
    app = create_app(settings)
    app.max_body_size = 64  # what FastAPI(max_body_size=...) sets
    client = await start_app(app)
    _, auth = await add_user(app, "alice")
    content = json.dumps({"name": "x" * 200}).encode()

    async def post(extra: dict[str, str]) -> Any:
        return await client.post(
            "/api/workspaces",
            content=_chunks(content[:40], content[40:]) if chunked else content,
            headers={**auth, "content-type": "application/json", **extra},
        )

    with_key, without_key = await post(_key("k")), await post({})
    assert with_key.status_code == without_key.status_code == 413
    assert with_key.content == without_key.content
    if chunked:  # (with a Content-Length Starlette's limiter answers in plain text itself)
        assert_error(with_key, 413, "payload_too_large")
    assert await _keys(app) == []


# --- answers that are not stored, and the error shape -------------------------------------


@pytest.fixture
async def odd_app(settings, start_app):
    """An app with routes that raise, stream, and answer with a Location."""
    app = create_app(settings)
    calls = {"boom": 0, "stream": 0, "located": 0}

    @app.post("/api/test/boom")
    async def boom() -> None:
        calls["boom"] += 1
        raise RuntimeError("broken")

    @app.post("/api/test/stream")
    async def stream() -> StreamingResponse:
        calls["stream"] += 1

        async def events() -> AsyncIterator[bytes]:
            yield b"event: delta\ndata: 1\n\n"
            yield b"event: done\ndata: 2\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/api/test/located", status_code=201)
    async def located(response: Response) -> JSONResponse:
        calls["located"] += 1
        return JSONResponse(
            {"n": calls["located"]},
            status_code=201,
            headers={"Location": "/api/test/thing/1", "X-Other": "not kept"},
        )

    client = await start_app(app)
    _, auth = await add_user(app, "alice")
    return app, client, auth, calls


async def test_an_unhandled_error_is_500_in_shape_and_releases_the_key(odd_app):
    app, client, auth, calls = odd_app
    headers = {**auth, **_key("k"), "X-Request-ID": "req-boom"}
    for attempt in (1, 2):
        response = await client.post("/api/test/boom", json={}, headers=headers)
        body = assert_error(response, 500, "internal_error")
        assert body["details"] == {"request_id": "req-boom"}
        assert response.headers["X-Request-ID"] == "req-boom"
        assert calls["boom"] == attempt
        assert await _keys(app) == []


async def test_an_event_stream_passes_through_and_is_not_stored(odd_app):
    app, client, auth, calls = odd_app
    for attempt in (1, 2):
        response = await client.post("/api/test/stream", json={}, headers={**auth, **_key("k")})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.text == "event: delta\ndata: 1\n\nevent: done\ndata: 2\n\n"
        assert REPLAYED not in response.headers
        assert calls["stream"] == attempt
    assert await _keys(app) == []


async def test_a_replay_keeps_status_body_content_type_and_location(odd_app):
    _, client, auth, calls = odd_app
    headers = {**auth, **_key("k")}
    first = await client.post("/api/test/located", json={"a": 1}, headers=headers)
    second = await client.post("/api/test/located", json={"a": 1}, headers=headers)

    assert calls["located"] == 1
    assert first.status_code == second.status_code == 201
    assert second.content == first.content == b'{"n":1}'
    assert second.headers["content-type"] == first.headers["content-type"]
    assert second.headers["location"] == first.headers["location"] == "/api/test/thing/1"
    assert second.headers["content-length"] == str(len(first.content))
    assert second.headers[REPLAYED] == "true"
    assert second.headers["X-Request-ID"]
    # Only status, body, content type and Location are kept.
    assert first.headers["X-Other"] == "not kept"
    assert "X-Other" not in second.headers


# --- pruning ------------------------------------------------------------------------------


async def test_prune_expired_removes_only_expired_keys(settings, start_app):
    app = create_app(settings)
    await start_app(app)
    alice, _ = await add_user(app, "alice")
    now = utcnow()
    await _insert_key(app, alice["id"], "POST /api/x", "old", expires_at=now - timedelta(seconds=1))
    await _insert_key(app, alice["id"], "POST /api/x", "older", expires_at=now - timedelta(days=2))
    await _insert_key(app, alice["id"], "POST /api/x", "fresh", expires_at=now + timedelta(hours=1))

    assert await prune_expired(app.state.db) == 2
    assert [row.key for row in await _keys(app)] == ["fresh"]
    assert await prune_expired(app.state.db) == 0


async def test_requests_prune_now_and_then(world, app):
    await _insert_key(
        app,
        world.ids["member_id"],
        "POST /api/x",
        "stale",
        expires_at=utcnow() - timedelta(seconds=1),
    )
    response = await world.call("member", "POST", TASKS, json={"title": "T"}, headers=_key("k"))
    assert response.status_code == 201
    await app.state.background.drain()
    assert [row.key for row in await _keys(app)] == ["k"]


def test_the_api_documents_the_header_on_every_stored_post(app):
    paths = app.openapi()["paths"]
    documented = {
        path
        for path, item in paths.items()
        if "post" in item
        and any(p["name"] == "Idempotency-Key" for p in item["post"].get("parameters", []))
    }
    posts = {path for path, item in paths.items() if "post" in item and path.startswith("/api/")}
    assert documented == {p for p in posts if not p.startswith("/api/auth/")}
    assert "/api/projects/{pid}/tasks" in documented
