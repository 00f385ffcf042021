"""Documents: versions, conflicting saves, restore, channel pages, events, permissions."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from huddle.documents.models import Document, DocumentVersion
from tests.helpers import assert_error
from tests.world import build_world, events


async def _doc(world, role="member", project="{P}", **body):
    body = {"title": "Runbook", "content": "# Deploy\n\nRun make deploy.", **body}
    return await world.ok(role, "POST", f"/api/projects/{project}/documents", 201, json=body)


async def _save(world, doc, base, role="member", expect=200, **body):
    body = {"title": doc["title"], "content": doc["content"], "base_version": base, **body}
    return await world.call(role, "PUT", f"/api/documents/{doc['id']}", json=body)


async def test_create_read_list_and_the_first_version(client, app):
    world = await build_world(client, app)
    created = await _doc(world)
    assert created["version"] == 1 and created["content"].startswith("# Deploy")
    assert created["created_by"] == world.ids["member_id"] and created["indexed_at"] is None
    got = await world.call("viewer", "GET", f"/api/documents/{created['id']}")
    assert got.status_code == 200 and got.headers["etag"] == '"1"'
    assert got.json() == created
    listed = await world.ok("viewer", "GET", "/api/projects/{P}/documents")
    assert [d["id"] for d in listed["items"]] == [created["id"]]
    assert "content" not in listed["items"][0]
    versions = await world.ok("viewer", "GET", f"/api/documents/{created['id']}/versions")
    assert [(v["version"], v["title"], v["author_id"]) for v in versions["items"]] == [
        (1, "Runbook", world.ids["member_id"])
    ]


async def test_saves_make_versions_and_a_stale_save_is_409_with_the_current_text(client, app):
    world = await build_world(client, app)
    doc = await _doc(world)
    first = await _save(world, doc, 1, content="Alice's edit")
    assert first.status_code == 200 and first.json()["version"] == 2
    assert first.headers["etag"] == '"2"'
    # Bob edited version 1 too: his save is refused and told what is there now.
    stale = await _save(world, doc, 1, role="admin", content="Bob's edit")
    body = assert_error(stale, 409, "conflict")
    assert body["details"]["current_version"] == 2
    assert body["details"]["content"] == "Alice's edit"
    # Nothing was lost: Alice's text is current, and both versions are in the history.
    current = await world.ok("viewer", "GET", f"/api/documents/{doc['id']}")
    assert current["content"] == "Alice's edit" and current["version"] == 2
    # Bob merges and saves on top of version 2.
    merged = await _save(world, doc, 2, role="admin", content="Alice's edit\n\nBob's edit")
    assert merged.status_code == 200 and merged.json()["version"] == 3
    assert merged.json()["updated_by"] == world.ids["admin_id"]
    history = await world.ok("viewer", "GET", f"/api/documents/{doc['id']}/versions")
    assert [v["version"] for v in history["items"]] == [3, 2, 1]
    old = await world.ok("viewer", "GET", f"/api/documents/{doc['id']}/versions/1")
    assert old["content"] == doc["content"] and old["document_id"] == doc["id"]


async def test_saving_the_same_text_makes_no_version(client, app):
    world = await build_world(client, app)
    doc = await _doc(world)
    same = await _save(world, doc, 1)
    assert same.status_code == 200 and same.json()["version"] == 1
    async with app.state.db.read_session() as session:
        count = await session.scalar(select(func.count()).select_from(DocumentVersion))
    assert count == 1
    assert [e["type"] for e in await events(world, "member", topic=f"project:{world.ids['P']}")][
        -1
    ] == "document.created"


async def test_concurrent_saves_from_one_base_one_wins_the_other_gets_409(client, app):
    world = await build_world(client, app)
    doc = await _doc(world)
    answers = await asyncio.gather(
        *(_save(world, doc, 1, content=f"edit {n}") for n in range(4)),
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 409, 409, 409], [a.text for a in answers]
    winner = next(a.json() for a in answers if a.status_code == 200)
    async with app.state.db.read_session() as session:
        rows = list(await session.scalars(select(DocumentVersion.content)))
    assert sorted(rows) == sorted([doc["content"], winner["content"]])


async def test_if_match_is_honoured_with_412(client, app):
    world = await build_world(client, app)
    doc = await _doc(world)
    body = {"title": "T", "content": "x", "base_version": 1}
    stale = await world.call(
        "member", "PUT", f"/api/documents/{doc['id']}", json=body, headers={"If-Match": '"7"'}
    )
    assert_error(stale, 412, "precondition_failed")
    fresh = await world.call(
        "member", "PUT", f"/api/documents/{doc['id']}", json=body, headers={"If-Match": '"1"'}
    )
    assert fresh.status_code == 200


async def test_restore_an_older_version_as_a_new_one(client, app):
    world = await build_world(client, app)
    doc = await _doc(world)
    await _save(world, doc, 1, title="Runbook v2", content="Rewritten")
    restored = await world.ok("member", "POST", f"/api/documents/{doc['id']}/versions/1/restore")
    assert restored["version"] == 3
    assert (restored["title"], restored["content"]) == (doc["title"], doc["content"])
    history = await world.ok("viewer", "GET", f"/api/documents/{doc['id']}/versions")
    assert history["items"][0]["restored_from"] == 1
    missing = await world.call("member", "POST", f"/api/documents/{doc['id']}/versions/9/restore")
    assert_error(missing, 404, "not_found")


async def test_events_carry_the_document_and_delete_removes_its_history(client, app):
    world = await build_world(client, app)
    doc = await _doc(world)
    await _save(world, doc, 1, content="v2")
    deleted = await world.call("member", "DELETE", f"/api/documents/{doc['id']}")
    assert deleted.status_code == 204
    feed = await events(world, "viewer", topic=f"project:{world.ids['P']}")
    mine = [e for e in feed if e["subject_id"] == doc["id"]]
    assert [e["type"] for e in mine] == ["document.created", "document.updated", "document.deleted"]
    assert mine[1]["data"]["content"] == "v2" and mine[1]["data"]["version"] == 2
    assert mine[0]["actor"] == {"kind": "user", "id": world.ids["member_id"]}
    assert (await world.call("member", "GET", f"/api/documents/{doc['id']}")).status_code == 404
    async with app.state.db.read_session() as session:
        assert await session.scalar(select(func.count()).select_from(DocumentVersion)) == 0
        assert await session.scalar(select(func.count()).select_from(Document)) == 0


async def test_who_may_write_and_delete(client, app):
    world = await build_world(client, app)
    viewer = await world.call(
        "viewer", "POST", "/api/projects/{P}/documents", json={"title": "x", "content": ""}
    )
    assert_error(viewer, 403, "forbidden")
    doc = await _doc(world)
    assert_error(await _save(world, doc, 1, role="viewer", content="no"), 403, "forbidden")
    # Another member may edit but not delete someone else's document; a project admin may.
    assert (await _save(world, doc, 1, role="bystander", content="yes")).status_code == 200
    other = await world.call("bystander", "DELETE", f"/api/documents/{doc['id']}")
    assert_error(other, 403, "forbidden")
    assert (
        await world.call("teammate", "DELETE", f"/api/documents/{doc['id']}")
    ).status_code == 204


async def test_private_project_documents_are_invisible_without_a_grant(client, app):
    world = await build_world(client, app)
    secret = await _doc(world, role="admin", project="{Q}")
    for role in ("member", "viewer", "outsider"):
        got = await world.call(role, "GET", f"/api/documents/{secret['id']}")
        assert_error(got, 404, "not_found")
        assert_error(await world.call(role, "GET", "/api/projects/{Q}/documents"), 404, "not_found")
    await world.ok(
        "admin", "PUT", "/api/projects/{Q}/permissions/{viewer_id}", json={"role": "viewer"}
    )
    assert (await world.call("viewer", "GET", f"/api/documents/{secret['id']}")).status_code == 200


async def test_a_channel_page_is_pinned_to_a_channel_of_the_project(client, app):
    world = await build_world(client, app, chat=True)
    page = await _doc(world, channel_id=world.ids["CH"])
    assert page["channel_id"] == world.ids["CH"]
    listed = await world.ok(
        "viewer", "GET", "/api/projects/{P}/documents", params={"channel_id": world.ids["CH"]}
    )
    assert [d["id"] for d in listed["items"]] == [page["id"]]
    # A channel elsewhere, one the caller cannot see, or a DM of others: 422, not pinned.
    for channel in ("CH2", "PC2"):
        bad = await world.call(
            "viewer" if channel == "PC2" else "member",
            "POST",
            "/api/projects/{P}/documents",
            json={"title": "x", "channel_id": world.ids[channel]},
        )
        assert bad.status_code in (403, 422), bad.text
    hidden = await world.call(
        "admin",
        "POST",
        "/api/projects/{P}/documents",
        json={"title": "x", "channel_id": world.ids["PC2"]},
    )
    assert_error(hidden, 422, "validation_error")
    # Unpinning with an explicit null.
    unpinned = await _save(world, page, 1, channel_id=None)
    assert unpinned.status_code == 200 and unpinned.json()["channel_id"] is None
    assert unpinned.json()["version"] == 1  # the text did not change


async def test_bad_input_is_a_clear_422(client, app):
    world = await build_world(client, app)
    doc = await _doc(world)
    for body in (
        {"title": "", "content": "x"},
        {"title": "x" * 301},
        {"title": "ok", "content": "a\x00b"},
        {"title": "ok", "extra": 1},
    ):
        r = await world.call("member", "POST", "/api/projects/{P}/documents", json=body)
        assert_error(r, 422, "validation_error")
    r = await world.call(
        "member", "PUT", f"/api/documents/{doc['id']}", json={"title": "x", "content": "y"}
    )
    assert_error(r, 422, "validation_error")  # base_version is required
    r = await world.call("member", "GET", f"/api/documents/{doc['id']}/versions/0")
    assert_error(r, 422, "validation_error")
