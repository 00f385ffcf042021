"""Clients: records per workspace, projects that belong to one, and deleting them."""

from __future__ import annotations

from tests.helpers import assert_error
from tests.world import build_world, events


async def test_admins_keep_client_records_that_members_read(client, app):
    world = await build_world(client, app)
    created = await world.ok(
        "admin",
        "POST",
        "/api/workspaces/{W}/clients",
        201,
        json={
            "name": "  Initech ",
            "contact_emails": [
                "Bill@Initech.example",
                "bill@initech.example",
                "pm@initech.example",
            ],
            "notes": "Prefers email.",
        },
    )
    assert created["name"] == "Initech" and created["status"] == "active"
    assert created["contact_emails"] == ["bill@initech.example", "pm@initech.example"]
    assert created["created_by"] == world.ids["admin_id"]
    world.ids["CL"] = created["id"]

    assert (await world.ok("viewer", "GET", "/api/workspaces/{W}/clients/{CL}"))["notes"] == (
        "Prefers email."
    )
    assert_error(
        await world.call("admin", "POST", "/api/workspaces/{W}/clients", json={"name": "Initech"}),
        409,
        "conflict",
    )
    assert_error(
        await world.call(
            "admin",
            "POST",
            "/api/workspaces/{W}/clients",
            json={"name": "Bad", "contact_emails": ["not-an-email"]},
        ),
        422,
        "validation_error",
    )
    other = await world.ok(
        "admin", "POST", "/api/workspaces/{W}/clients", 201, json={"name": "Globex"}
    )
    assert_error(
        await world.call(
            "admin",
            "PATCH",
            f"/api/workspaces/{{W}}/clients/{other['id']}",
            json={"name": "Initech"},
        ),
        409,
        "conflict",
    )
    archived = await world.ok(
        "admin",
        "PATCH",
        f"/api/workspaces/{{W}}/clients/{other['id']}",
        json={"status": "archived"},
    )
    assert archived["status"] == "archived" and archived["updated_at"] > archived["created_at"]

    everyone = await world.ok("member", "GET", "/api/workspaces/{W}/clients")
    assert [c["name"] for c in everyone["items"]] == ["Initech", "Globex"]
    active = await world.ok("member", "GET", "/api/workspaces/{W}/clients?status=active")
    assert [c["name"] for c in active["items"]] == ["Initech"]
    # Another workspace sees none of them.
    assert (await world.ok("outsider", "GET", "/api/workspaces/{W2}/clients"))["items"] == []

    seen = await events(world, "viewer", topic=f"workspace:{world.ids['W']}")
    types = [e["type"] for e in seen if e["type"].startswith("client.")]
    assert types == ["client.created", "client.created", "client.updated"]
    assert seen[-1]["data"]["status"] == "archived"


async def test_projects_belong_to_a_client_and_list_under_it(client, app):
    world = await build_world(client, app)
    initech = await world.ok(
        "admin", "POST", "/api/workspaces/{W}/clients", 201, json={"name": "Initech"}
    )
    globex = await world.ok(
        "admin", "POST", "/api/workspaces/{W}/clients", 201, json={"name": "Globex"}
    )
    elsewhere = await world.ok(
        "outsider", "POST", "/api/workspaces/{W2}/clients", 201, json={"name": "Elsewhere"}
    )
    tps = await world.ok(
        "member",
        "POST",
        "/api/workspaces/{W}/projects",
        201,
        json={"name": "TPS reports", "client_id": initech["id"]},
    )
    assert tps["client_id"] == initech["id"]
    await world.ok(
        "admin",
        "POST",
        "/api/workspaces/{W}/projects",
        201,
        json={"name": "Layoffs", "client_id": initech["id"], "is_private": True},
    )

    def names(page):
        return sorted(p["name"] for p in page["items"])

    under = f"/api/workspaces/{{W}}/projects?client_id={initech['id']}"
    assert names(await world.ok("admin", "GET", under)) == ["Layoffs", "TPS reports"]
    # The filter keeps project visibility: a private project stays hidden from non-members.
    assert names(await world.ok("member", "GET", under)) == ["TPS reports"]

    # Linking to a client of another workspace, or to no client at all, is refused.
    for bad in (elsewhere["id"], "01a20000-0000-7000-8000-000000000000"):
        body = assert_error(
            await world.call(
                "admin", "PATCH", f"/api/projects/{tps['id']}", json={"client_id": bad}
            ),
            422,
            "validation_error",
        )
        assert body["details"][0]["loc"] == ["body", "client_id"]
    moved = await world.ok(
        "member", "GET", f"/api/projects/{tps['id']}"
    )  # unchanged after the refusals
    assert moved["client_id"] == initech["id"]
    # Only the project's admins relink it (the creator is one).
    assert_error(
        await world.call(
            "viewer", "PATCH", f"/api/projects/{tps['id']}", json={"client_id": globex["id"]}
        ),
        403,
        "forbidden",
    )
    relinked = await world.ok(
        "member", "PATCH", f"/api/projects/{tps['id']}", json={"client_id": globex["id"]}
    )
    assert relinked["client_id"] == globex["id"]
    # A PATCH without client_id leaves the link alone; null removes it.
    renamed = await world.ok("member", "PATCH", f"/api/projects/{tps['id']}", json={"name": "TPS"})
    assert renamed["client_id"] == globex["id"]
    unlinked = await world.ok(
        "member", "PATCH", f"/api/projects/{tps['id']}", json={"client_id": None}
    )
    assert unlinked["client_id"] is None
    updates = [
        e
        for e in await events(world, "member", topic=f"workspace:{world.ids['W']}")
        if e["type"] == "project.updated" and e["subject_id"] == tps["id"]
    ]
    assert [e["data"]["client_id"] for e in updates] == [globex["id"], globex["id"], None]


async def test_a_client_with_projects_cannot_be_deleted_until_they_move(client, app):
    world = await build_world(client, app)
    initech = await world.ok(
        "admin", "POST", "/api/workspaces/{W}/clients", 201, json={"name": "Initech"}
    )
    path = f"/api/workspaces/{{W}}/clients/{initech['id']}"
    live = await world.ok(
        "admin",
        "POST",
        "/api/workspaces/{W}/projects",
        201,
        json={"name": "Live", "client_id": initech["id"]},
    )
    gone = await world.ok(
        "admin",
        "POST",
        "/api/workspaces/{W}/projects",
        201,
        json={"name": "Gone", "client_id": initech["id"]},
    )
    await world.ok("admin", "DELETE", f"/api/projects/{gone['id']}", 204)

    refused = assert_error(await world.call("admin", "DELETE", path), 409, "conflict")
    assert refused["details"] == {"project_ids": [live["id"]]}
    assert (await world.ok("member", "GET", path))["name"] == "Initech"  # still there

    await world.ok("admin", "PATCH", f"/api/projects/{live['id']}", json={"client_id": None})
    await world.ok("admin", "DELETE", path, 204)
    assert_error(await world.call("member", "GET", path), 404, "not_found")
    seen = await events(world, "member", topic=f"workspace:{world.ids['W']}")
    assert [e["type"] for e in seen if e["type"].startswith("client.")][-1] == "client.deleted"
