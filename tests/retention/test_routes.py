"""PATCH /api/workspaces/{wid} data_retention_days: who may set it, what is accepted, and
what a pass then removes from what users see (history, search)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import update

from huddle.app import create_app
from huddle.chat.models import Message
from huddle.core.time import utcnow
from huddle.retention.service import run_pass
from huddle.workspaces.models import Workspace
from tests.helpers import assert_error
from tests.world import ROLES, build_world, events

PATH = "/api/workspaces/{W}"
# anonymous, outsider, viewer, member, admin, superuser (as in the authorization matrix)
EXPECTED = dict(zip(ROLES, (401, 404, 403, 403, 200, 404), strict=True))
CODES = {401: "not_authenticated", 403: "forbidden", 404: "not_found"}


async def _stored_days(app, workspace_id: str) -> int | None:
    async with app.state.db.read_session() as session:
        workspace = await session.get(Workspace, uuid.UUID(workspace_id))
        assert workspace is not None
        return workspace.data_retention_days


@pytest.mark.parametrize("role", ROLES)
async def test_only_workspace_admins_set_the_limit(client, app, role):
    world = await build_world(client, app)
    response = await world.call(role, "PATCH", PATH, json={"data_retention_days": 7})
    expected = EXPECTED[role]
    assert response.status_code == expected, response.text
    if expected == 200:
        assert response.json()["data_retention_days"] == 7
        assert await _stored_days(app, world.ids["W"]) == 7
    else:
        assert_error(response, expected, CODES[expected])
        assert await _stored_days(app, world.ids["W"]) is None


async def test_set_read_and_clear_under_a_site_limit(make_settings, start_app):
    app = create_app(make_settings(data_retention_days=30))
    client = await start_app(app)
    world = await build_world(client, app)
    assert (await world.ok("viewer", "GET", PATH))["data_retention_days"] is None

    for days in (1, 7, 30):
        body = await world.ok("admin", "PATCH", PATH, json={"data_retention_days": days})
        assert body["data_retention_days"] == days
        assert (await world.ok("member", "GET", PATH))["data_retention_days"] == days
    listed = await world.ok("admin", "GET", "/api/workspaces")
    assert [w["data_retention_days"] for w in listed["items"]] == [30]
    # A rename leaves the limit alone; an explicit null clears it.
    renamed = await world.ok("admin", "PATCH", PATH, json={"name": "Renamed"})
    assert renamed["data_retention_days"] == 30
    cleared = await world.ok("admin", "PATCH", PATH, json={"data_retention_days": None})
    assert cleared["data_retention_days"] is None
    assert await _stored_days(app, world.ids["W"]) is None

    updates = [e for e in await events(world, "member") if e["type"] == "workspace.updated"]
    assert [e["data"]["data_retention_days"] for e in updates] == [1, 7, 30, 30, None]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (31, "at most the server's limit of 30 days"),
        (0, "greater than or equal to 1"),
        (-5, "greater than or equal to 1"),
        (36_501, "less than or equal to 36500"),
        ("forever", "valid integer"),
        (2.5, "valid integer"),
    ],
)
async def test_invalid_limits_are_422(make_settings, start_app, value, message):
    app = create_app(make_settings(data_retention_days=30))
    client = await start_app(app)
    world = await build_world(client, app)
    await world.ok("admin", "PATCH", PATH, json={"data_retention_days": 10})
    response = await world.call("admin", "PATCH", PATH, json={"data_retention_days": value})
    body = assert_error(response, 422, "validation_error")
    assert body["details"][0]["loc"] == ["body", "data_retention_days"]
    assert message in body["details"][0]["msg"]
    assert await _stored_days(app, world.ids["W"]) == 10  # unchanged


async def test_without_a_site_limit_any_limit_up_to_a_century_is_accepted(client, app):
    world = await build_world(client, app)
    body = await world.ok("admin", "PATCH", PATH, json={"data_retention_days": 36_500})
    assert body["data_retention_days"] == 36_500


async def test_expired_messages_leave_history_and_search(client, app):
    world = await build_world(client, app, chat=True)
    await world.ok("admin", "PATCH", PATH, json={"data_retention_days": 2})
    old = await world.ok(
        "member", "POST", "/api/channels/{CH}/messages", 201, json={"content": "zebra crossing"}
    )
    new = await world.ok(
        "member", "POST", "/api/channels/{CH}/messages", 201, json={"content": "zebra stripes"}
    )
    async with app.state.db.write_session() as session:
        await session.execute(
            update(Message)
            .where(Message.id == uuid.UUID(old["id"]))
            .values(created_at=utcnow() - timedelta(days=2, seconds=1))
        )
        await session.commit()

    async def search() -> set[str]:
        found = await world.ok("viewer", "GET", "/api/workspaces/{W}/search", params={"q": "zebra"})
        return {hit["id"] for hit in found["items"]}

    assert await search() == {old["id"], new["id"]}
    report = await run_pass(app.state.db, app.state.settings)
    assert report.totals.messages == 1
    assert await search() == {new["id"]}
    history = await world.ok("viewer", "GET", "/api/channels/{CH}/messages")
    ids = [m["id"] for m in history["items"]]
    assert new["id"] in ids and old["id"] not in ids and world.ids["M"] in ids
    gone = await world.call("viewer", "GET", f"/api/messages/{old['id']}")
    assert_error(gone, 404, "not_found")
