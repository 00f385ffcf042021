"""Projects: private visibility, grants to users and teams, role caching, archive and delete."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from huddle.app import create_app
from tests.helpers import assert_error, background
from tests.world import build_world, events


def _ids(page):
    return [p["id"] for p in page["items"]]


async def test_private_project_is_invisible_until_granted(client, app):
    world = await build_world(client, app)
    assert_error(await world.call("member", "GET", "/api/projects/{Q}"), 404, "not_found")
    assert world.ids["Q"] not in _ids(
        await world.ok("member", "GET", "/api/workspaces/{W}/projects")
    )
    grant = await world.ok(
        "admin", "PUT", "/api/projects/{Q}/permissions/{member_id}", json={"role": "viewer"}
    )
    assert grant == {
        **grant,
        "project_id": world.ids["Q"],
        "user_id": world.ids["member_id"],
        "role": "viewer",
    }
    seen = await world.ok("member", "GET", "/api/projects/{Q}")
    assert seen["role"] == "viewer" and seen["is_private"] is True
    listed = await world.ok("member", "GET", "/api/workspaces/{W}/projects")
    assert world.ids["Q"] in _ids(listed)
    # A viewer grant does not allow changing settings.
    assert_error(
        await world.call("member", "PATCH", "/api/projects/{Q}", json={"name": "x"}),
        403,
        "forbidden",
    )
    await world.ok("admin", "DELETE", "/api/projects/{Q}/permissions/{member_id}", 204)
    assert_error(await world.call("member", "GET", "/api/projects/{Q}"), 404, "not_found")


async def test_team_grant_reaches_team_members_only(client, app):
    world = await build_world(client, app)
    await world.ok(
        "admin", "PUT", "/api/projects/{Q}/team-permissions/{T}", json={"role": "member"}
    )
    assert (await world.ok("teammate", "GET", "/api/projects/{Q}"))["role"] == "member"
    assert_error(await world.call("member", "GET", "/api/projects/{Q}"), 404, "not_found")
    # Removing the teammate from the team takes the access away on the next request.
    await world.ok("admin", "DELETE", "/api/teams/{T}/members/{teammate_id}", 204)
    assert_error(await world.call("teammate", "GET", "/api/projects/{Q}"), 404, "not_found")


async def test_effective_role_on_public_project_is_the_higher_of_workspace_role_and_grant(
    client, app
):
    world = await build_world(client, app)
    assert (await world.ok("viewer", "GET", "/api/projects/{P}"))["role"] == "viewer"
    await world.ok(
        "admin", "PUT", "/api/projects/{P}/permissions/{viewer_id}", json={"role": "member"}
    )
    assert (await world.ok("viewer", "GET", "/api/projects/{P}"))["role"] == "member"
    # A lower grant never lowers the workspace role.
    await world.ok(
        "admin", "PUT", "/api/projects/{P}/permissions/{member_id}", json={"role": "viewer"}
    )
    assert (await world.ok("member", "GET", "/api/projects/{P}"))["role"] == "member"
    # The teammate's admin grant on P lets them change its settings.
    updated = await world.ok(
        "teammate", "PATCH", "/api/projects/{P}", json={"description": "by teammate"}
    )
    assert updated["description"] == "by teammate" and updated["role"] == "admin"


async def test_workspace_admin_is_admin_of_private_projects(client, app):
    world = await build_world(client, app)
    assert (await world.ok("admin", "GET", "/api/projects/{Q}"))["role"] == "admin"
    # Promote the member to workspace admin: they see Q at once.
    await world.ok(
        "admin", "PATCH", "/api/workspaces/{W}/members/{member_id}", json={"role": "admin"}
    )
    assert (await world.ok("member", "GET", "/api/projects/{Q}"))["role"] == "admin"


async def test_demoted_user_loses_write_access_on_the_next_request(make_settings, start_app):
    await _demotion_scenario(make_settings(), start_app)


async def test_demotion_with_the_role_cache_in_redis(make_settings, start_app, redis_settings):
    await _demotion_scenario(make_settings(**redis_settings), start_app)


async def _demotion_scenario(settings, start_app):
    app = create_app(settings)
    client = await start_app(app)
    world = await build_world(client, app)
    # Warm the role cache with the member's write access.
    created = await world.ok(
        "member", "POST", "/api/workspaces/{W}/projects", 201, json={"name": "Mine"}
    )
    assert created["role"] == "admin"
    await world.ok("member", "GET", "/api/projects/{P}")
    await world.ok(
        "admin", "PATCH", "/api/workspaces/{W}/members/{member_id}", json={"role": "viewer"}
    )
    response = await world.call(
        "member", "POST", "/api/workspaces/{W}/projects", json={"name": "Another"}
    )
    assert_error(response, 403, "forbidden")
    assert (await world.ok("member", "GET", "/api/projects/{P}"))["role"] == "viewer"
    # Removal from the workspace: 404 on the next request.
    await world.ok("admin", "DELETE", "/api/workspaces/{W}/members/{member_id}", 204)
    assert_error(await world.call("member", "GET", "/api/projects/{P}"), 404, "not_found")


async def test_member_creating_a_private_project_keeps_access(client, app):
    world = await build_world(client, app)
    created = await world.ok(
        "member",
        "POST",
        "/api/workspaces/{W}/projects",
        201,
        json={"name": "Mine", "is_private": True},
    )
    assert created["role"] == "admin" and created["is_private"] is True
    world.ids["M"] = created["id"]
    assert (await world.ok("member", "GET", "/api/projects/{M}"))["role"] == "admin"
    assert_error(await world.call("viewer", "GET", "/api/projects/{M}"), 404, "not_found")
    assert (await world.ok("admin", "GET", "/api/projects/{M}"))["role"] == "admin"


async def test_archive_restore_and_delete(client, app):
    world = await build_world(client, app)
    archived = await world.ok("admin", "PATCH", "/api/projects/{P}", json={"archived": True})
    assert archived["archived_at"] is not None
    assert world.ids["P"] not in _ids(
        await world.ok("member", "GET", "/api/workspaces/{W}/projects")
    )
    with_archived = await world.ok(
        "member", "GET", "/api/workspaces/{W}/projects", params={"include_archived": "true"}
    )
    assert world.ids["P"] in _ids(with_archived)
    restored = await world.ok("admin", "PATCH", "/api/projects/{P}", json={"archived": False})
    assert restored["archived_at"] is None
    await world.ok("admin", "DELETE", "/api/projects/{P}", 204)
    assert_error(await world.call("member", "GET", "/api/projects/{P}"), 404, "not_found")
    assert world.ids["P"] not in _ids(
        await world.ok(
            "admin", "GET", "/api/workspaces/{W}/projects", params={"include_archived": "true"}
        )
    )
    types = [e["type"] for e in await events(world, "member") if e["subject_id"] == world.ids["P"]]
    assert types == [
        "project.created",
        "project.permission_set",
        "project.updated",
        "project.updated",
        "project.deleted",
    ]


async def test_project_events_follow_privacy(client, app):
    world = await build_world(client, app)
    cursor = (await events(world, "admin"))[-1]["id"]
    await world.ok("admin", "PATCH", "/api/projects/{P}", json={"is_private": True})
    await world.ok("admin", "PATCH", "/api/projects/{Q}", json={"is_private": False})
    admin_new = await events(world, "admin", since=cursor)
    assert [(e["type"], e["topic"]) for e in admin_new] == [
        ("project.updated", f"project:{world.ids['P']}"),
        ("project.updated", f"workspace:{world.ids['W']}"),
    ]
    member_new = await events(world, "member", since=cursor)
    # P became private (member has no grant): its update does not reach the member.
    assert [e["subject_id"] for e in member_new] == [world.ids["Q"]]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/projects/{P}/permissions/{outsider_id}", {"role": "member"}),
        ("/api/projects/{P}/permissions/{newcomer_id}", {"role": "member"}),
        ("/api/projects/{P}/team-permissions/{T2}", {"role": "member"}),
        ("/api/projects/{P}/permissions/{member_id}", {"role": "owner"}),
        ("/api/projects/{P}/permissions/{member_id}", {}),
    ],
)
async def test_grants_go_to_members_and_teams_of_the_workspace_only(client, app, path, body):
    world = await build_world(client, app)
    assert_error(await world.call("admin", "PUT", path, json=body), 422, "validation_error")
    grants = (await world.ok("admin", "GET", "/api/projects/{P}/permissions"))["items"]
    assert {g["user_id"] for g in grants} == {world.ids["admin_id"], world.ids["teammate_id"]}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "x" * 201},
        {"name": "ok", "is_private": "yes"},
        {"name": "ok", "extra": 1},
        {"name": "ok", "description": "a\x00b"},
    ],
)
async def test_invalid_projects_are_422(client, app, body):
    world = await build_world(client, app)
    assert_error(
        await world.call("member", "POST", "/api/workspaces/{W}/projects", json=body),
        422,
        "validation_error",
    )


async def test_project_list_query_count_does_not_grow_with_projects(client, app, monkeypatch):
    import huddle.access.service as access_service

    monkeypatch.setattr(access_service, "_CLOCK_MARGIN", -3600.0)  # cache roles at once
    world = await build_world(client, app)
    statements = []

    def count(_conn, _cursor, statement, *_args):
        # The dispatcher may run a pass meanwhile (it polls); only the request counts.
        if statement.startswith("SELECT") and not background(statement):
            statements.append(statement)

    engine = app.state.db.engine.sync_engine

    async def list_count() -> int:
        await app.state.dispatcher.flush()
        statements.clear()
        event.listen(engine, "before_cursor_execute", count)
        try:
            await world.ok("member", "GET", "/api/workspaces/{W}/projects")
        finally:
            event.remove(engine, "before_cursor_execute", count)
        return len(statements)

    await list_count()  # warm the role cache
    few = await list_count()
    for n in range(15):
        await world.ok(
            "admin", "POST", "/api/workspaces/{W}/projects", 201, json={"name": f"Extra {n}"}
        )
    await list_count()  # creating projects invalidated the cached roles: warm again
    many = await list_count()
    assert many == few, statements
    assert few <= 4, statements  # user, workspace, visible projects page, grants
    page = await world.ok("member", "GET", "/api/workspaces/{W}/projects", params={"limit": 5})
    assert len(page["items"]) == 5 and page["next_cursor"]
