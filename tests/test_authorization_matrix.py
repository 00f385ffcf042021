"""Every route of workspaces, teams, invitations, projects, events and admin, as each role.

Statuses per role, in the order anonymous, outsider, viewer, member, admin, superuser.
The outsider is admin of another workspace; the superuser is a site admin who is not a
member of W (superusers are not implicit members). Q is a private project with no
grants for viewer or member. Every error is checked for the error shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from huddle.app import create_app
from huddle.licensing.service import FEATURES
from tests.conftest import AppClient, _empty_tables
from tests.helpers import assert_error
from tests.licensing.keys import install_license
from tests.world import (
    ROLES,
    World,
    add_ai,
    add_automations,
    add_clients,
    add_documents,
    add_webhooks,
    build_world,
)


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    expect: tuple[int, int, int, int, int, int]
    body: Callable[[World], Any] | dict[str, Any] | None = None
    query: str = ""
    chat: bool = False  # needs the chat part of the world (channels, DMs, messages)
    webhooks: bool = False  # needs webhooks WH (of W) and WH2 (of W2), delivery WD
    documents: bool = False  # needs documents D (P) and QD (Q), files F (P) and QF (Q)
    upload: bool = False  # the body is a multipart upload of a small markdown file
    ai: bool = False  # needs conversation C, pending action A, prompts PR and SPR
    licensed: bool = False  # runs with a license that has every feature (see below)
    clients: bool = False  # needs client CL (of W) and CL2 (of W2)
    automations: bool = False  # needs rules AU (P), QAU (Q) and AU2 (P2)

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}{self.query}"


R401 = 401
WS_READ = (R401, 404, 200, 200, 200, 404)
WS_ADMIN = (R401, 404, 403, 403, 200, 404)
WS_ADMIN_201 = (R401, 404, 403, 403, 201, 404)
WS_ADMIN_204 = (R401, 404, 403, 403, 204, 404)
PRIVATE_READ = (R401, 404, 404, 404, 200, 404)
ADMIN_ONLY = (R401, 403, 403, 403, 403, 200)
MEMBER_WRITE = (R401, 404, 403, 200, 200, 404)
MEMBER_WRITE_201 = (R401, 404, 403, 201, 201, 404)
PRIVATE_WRITE_201 = (R401, 404, 404, 404, 201, 404)
PRIVATE_WRITE_204 = (R401, 404, 404, 404, 204, 404)
NOWHERE = (R401, 404, 404, 404, 404, 404)
_RULE = {
    "name": "Triage",
    "trigger": {"event": "task.created", "priority": "urgent"},
    "actions": [{"type": "set_priority", "priority": "high"}],
}

CASES = [
    # workspaces
    Case("POST", "/api/workspaces", (R401, 201, 201, 201, 201, 201), {"name": "New"}),
    Case("GET", "/api/workspaces", (R401, 200, 200, 200, 200, 200)),
    Case("GET", "/api/workspaces/{W}", WS_READ),
    Case("PATCH", "/api/workspaces/{W}", WS_ADMIN, {"name": "Renamed"}),
    Case("DELETE", "/api/workspaces/{W}", WS_ADMIN_204),
    # clients
    Case("POST", "/api/workspaces/{W}/clients", WS_ADMIN_201, {"name": "Globex"}),
    Case("GET", "/api/workspaces/{W}/clients", WS_READ, clients=True),
    Case("GET", "/api/workspaces/{W}/clients/{CL}", WS_READ, clients=True),
    Case("PATCH", "/api/workspaces/{W}/clients/{CL}", WS_ADMIN, {"notes": "VIP"}, clients=True),
    Case("DELETE", "/api/workspaces/{W}/clients/{CL}", WS_ADMIN_204, clients=True),
    # another workspace's client is not found through this one
    Case("GET", "/api/workspaces/{W}/clients/{CL2}", (R401, 404, 404, 404, 404, 404), clients=True),
    Case(
        "PATCH",
        "/api/workspaces/{W}/clients/{CL2}",
        (R401, 404, 404, 404, 404, 404),
        {"notes": "x"},
        clients=True,
    ),
    # members
    Case("GET", "/api/workspaces/{W}/members", WS_READ),
    Case(
        "POST",
        "/api/workspaces/{W}/members",
        WS_ADMIN_201,
        lambda w: {"email": "newcomer@example.com"},
    ),
    Case("PATCH", "/api/workspaces/{W}/members/{bystander_id}", WS_ADMIN, {"role": "viewer"}),
    Case("DELETE", "/api/workspaces/{W}/members/{bystander_id}", WS_ADMIN_204),
    # invitations
    Case("POST", "/api/workspaces/{W}/invitations", WS_ADMIN_201, {"email": "someone@example.com"}),
    Case("GET", "/api/workspaces/{W}/invitations", WS_ADMIN),
    Case("DELETE", "/api/workspaces/{W}/invitations/{I}", WS_ADMIN_204),
    # invitations of another workspace are not reachable through W
    Case("DELETE", "/api/workspaces/{W}/invitations/{I2}", (R401, 404, 403, 403, 404, 404)),
    # teams
    Case("POST", "/api/workspaces/{W}/teams", WS_ADMIN_201, {"name": "QA", "handle": "qa"}),
    Case("GET", "/api/workspaces/{W}/teams", WS_READ),
    Case("GET", "/api/teams/{T}", WS_READ),
    Case("PATCH", "/api/teams/{T}", WS_ADMIN, {"name": "Design 2"}),
    Case("DELETE", "/api/teams/{T}", WS_ADMIN_204),
    Case("GET", "/api/teams/{T}/members", WS_READ),
    Case(
        "POST", "/api/teams/{T}/members", WS_ADMIN_201, lambda w: {"user_id": w.ids["bystander_id"]}
    ),
    Case("DELETE", "/api/teams/{T}/members/{teammate_id}", WS_ADMIN_204),
    Case("GET", "/api/teams/{T2}", (R401, 200, 404, 404, 404, 404)),
    # projects
    Case(
        "POST", "/api/workspaces/{W}/projects", (R401, 404, 403, 201, 201, 404), {"name": "Roadmap"}
    ),
    Case("GET", "/api/workspaces/{W}/projects", WS_READ),
    Case("GET", "/api/projects/{P}", WS_READ),
    Case("PATCH", "/api/projects/{P}", WS_ADMIN, {"description": "new"}),
    Case("DELETE", "/api/projects/{P}", WS_ADMIN_204),
    Case("GET", "/api/projects/{Q}", PRIVATE_READ),
    Case("PATCH", "/api/projects/{Q}", PRIVATE_READ, {"name": "Still secret"}),
    Case("DELETE", "/api/projects/{Q}", (R401, 404, 404, 404, 204, 404)),
    Case("GET", "/api/projects/{P2}", (R401, 200, 404, 404, 404, 404)),
    # grants
    Case("GET", "/api/projects/{P}/permissions", WS_READ),
    Case("GET", "/api/projects/{Q}/permissions", PRIVATE_READ),
    Case("PUT", "/api/projects/{P}/permissions/{bystander_id}", WS_ADMIN, {"role": "admin"}),
    Case("DELETE", "/api/projects/{P}/permissions/{teammate_id}", WS_ADMIN_204),
    Case("PUT", "/api/projects/{Q}/permissions/{member_id}", PRIVATE_READ, {"role": "viewer"}),
    Case("PUT", "/api/projects/{P}/team-permissions/{T}", WS_ADMIN, {"role": "member"}),
    Case("DELETE", "/api/projects/{P}/team-permissions/{T}", (R401, 404, 403, 403, 404, 404)),
    # board columns
    Case("GET", "/api/projects/{P}/columns", WS_READ),
    Case("GET", "/api/projects/{Q}/columns", PRIVATE_READ),
    Case("POST", "/api/projects/{P}/columns", WS_ADMIN_201, {"name": "Review"}),
    Case("PATCH", "/api/columns/{C}", WS_ADMIN, {"name": "Backlog"}),
    Case("DELETE", "/api/columns/{C}", WS_ADMIN_204, query="?move_to={C_done}"),
    # tasks
    Case("POST", "/api/projects/{P}/tasks", MEMBER_WRITE_201, {"title": "New task"}),
    Case("POST", "/api/projects/{Q}/tasks", PRIVATE_WRITE_201, {"title": "New task"}),
    Case("GET", "/api/projects/{P}/tasks", WS_READ),
    Case("GET", "/api/projects/{P}/board", WS_READ),
    Case("GET", "/api/projects/{Q}/board", PRIVATE_READ),
    Case("GET", "/api/projects/{P}/workflow", WS_READ),
    Case("PUT", "/api/projects/{P}/workflow", WS_ADMIN, {"transitions": [], "wip_limits": []}),
    Case("GET", "/api/projects/{Q}/workflow", PRIVATE_READ),
    Case("PUT", "/api/projects/{Q}/workflow", PRIVATE_READ, {"transitions": []}),
    # automation rules: project readers see them and their runs, project admins write
    Case("POST", "/api/projects/{P}/automations", WS_ADMIN_201, lambda w: _RULE),
    Case("POST", "/api/projects/{Q}/automations", PRIVATE_WRITE_201, lambda w: _RULE),
    Case("GET", "/api/projects/{P}/automations", WS_READ, automations=True),
    Case("GET", "/api/projects/{Q}/automations", PRIVATE_READ, automations=True),
    Case("GET", "/api/projects/{P}/automations/{AU}", WS_READ, automations=True),
    Case("GET", "/api/projects/{Q}/automations/{QAU}", PRIVATE_READ, automations=True),
    Case("GET", "/api/projects/{P}/automations/{AU}/runs", WS_READ, automations=True),
    Case("GET", "/api/projects/{Q}/automations/{QAU}/runs", PRIVATE_READ, automations=True),
    Case(
        "PATCH",
        "/api/projects/{P}/automations/{AU}",
        WS_ADMIN,
        {"enabled": False},
        automations=True,
    ),
    Case(
        "PATCH",
        "/api/projects/{Q}/automations/{QAU}",
        PRIVATE_READ,
        {"enabled": False},
        automations=True,
    ),
    Case("DELETE", "/api/projects/{P}/automations/{AU}", WS_ADMIN_204, automations=True),
    Case("DELETE", "/api/projects/{Q}/automations/{QAU}", PRIVATE_WRITE_204, automations=True),
    # another project's rule is not found through this one
    Case("GET", "/api/projects/{P}/automations/{AU2}", NOWHERE, automations=True),
    Case("GET", "/api/projects/{P}/automations/{QAU}/runs", NOWHERE, automations=True),
    Case("DELETE", "/api/projects/{P}/automations/{AU2}", NOWHERE, automations=True),
    Case("GET", "/api/tasks/{TK}", WS_READ),
    Case("GET", "/api/tasks/{QT}", PRIVATE_READ),
    Case("PATCH", "/api/tasks/{TK}", MEMBER_WRITE, {"title": "Renamed"}),
    Case("PATCH", "/api/tasks/{QT}", PRIVATE_READ, {"title": "Renamed"}),
    Case("POST", "/api/tasks/{TK}/move", MEMBER_WRITE, lambda w: {"column_id": w.ids["C_done"]}),
    Case("DELETE", "/api/tasks/{TK}", WS_ADMIN_204),
    Case("GET", "/api/tasks/{TK}/activity", WS_READ),
    Case("GET", "/api/tasks/{QT}/activity", PRIVATE_READ),
    Case("GET", "/api/me/tasks", (R401, 200, 200, 200, 200, 200)),
    Case("GET", "/api/admin/tasks", ADMIN_ONLY),
    # events
    Case("GET", "/api/events", (R401, 200, 200, 200, 200, 200)),
    Case("GET", "/api/events", WS_READ, query="?topic=workspace:{W}"),
    Case("GET", "/api/events", PRIVATE_READ, query="?topic=workspace:{W}:admin"),
    Case("GET", "/api/events", PRIVATE_READ, query="?topic=project:{Q}"),
    Case(
        "GET", "/api/events", (R401, 200, 404, 404, 404, 404), query="?topic=workspace:{W2}:admin"
    ),
    # site administration
    Case("GET", "/api/admin/users", ADMIN_ONLY),
    Case("PATCH", "/api/admin/users/{bystander_id}", ADMIN_ONLY, {"is_active": False}),
    Case("DELETE", "/api/admin/users/{bystander_id}", (R401, 403, 403, 403, 403, 204)),
]

# Chat (tests/world.py add_chat): CH public, PC private with member+viewer (admin made it),
# PC2 private with bystander+member (admin not in it: sees it, cannot read it), DM between
# member and bystander (invisible to admins), M/PM2/DMM messages by member.
PC2_READ = (R401, 404, 404, 200, 403, 404)
MEMBER_ONLY = (R401, 404, 404, 200, 404, 404)
CHAT_CASES = [
    Case("POST", "/api/workspaces/{W}/channels", MEMBER_WRITE_201, {"name": "new"}),
    Case(
        "POST",
        "/api/workspaces/{W}/channels",
        MEMBER_WRITE_201,
        {"name": "secret", "is_private": True},
    ),
    Case("GET", "/api/workspaces/{W}/channels", WS_READ),
    Case(
        "POST",
        "/api/workspaces/{W}/dms",
        MEMBER_WRITE_201,
        lambda w: {"user_ids": [w.ids["teammate_id"]]},
    ),
    Case("GET", "/api/channels/{CH}", WS_READ),
    Case("GET", "/api/channels/{PC}", (R401, 404, 200, 200, 200, 404)),
    Case("GET", "/api/channels/{PC2}", (R401, 404, 404, 200, 200, 404)),
    Case("GET", "/api/channels/{DM}", MEMBER_ONLY),
    Case("GET", "/api/channels/{CH2}", (R401, 200, 404, 404, 404, 404)),
    Case("PATCH", "/api/channels/{CH}", WS_ADMIN, {"topic": "news"}),
    Case("PATCH", "/api/channels/{PC2}", (R401, 404, 404, 403, 200, 404), {"topic": "x"}),
    Case("PATCH", "/api/channels/{DM}", (R401, 404, 404, 403, 404, 404), {"topic": "x"}),
    Case("DELETE", "/api/channels/{CH}", WS_ADMIN_204),
    Case("DELETE", "/api/channels/{DM}", (R401, 404, 404, 403, 404, 404)),
    Case(
        "POST",
        "/api/channels/{PC}/members",
        (R401, 404, 403, 201, 201, 404),
        lambda w: {"user_id": w.ids["teammate_id"]},
    ),
    Case(
        "POST",
        "/api/channels/{PC2}/members",
        (R401, 404, 404, 201, 201, 404),
        lambda w: {"user_id": w.ids["admin_id"]},
    ),
    Case("DELETE", "/api/channels/{PC}/members/{viewer_id}", (R401, 404, 204, 403, 204, 404)),
    Case("DELETE", "/api/channels/{CH}/members/{member_id}", (R401, 404, 409, 409, 409, 404)),
    Case("POST", "/api/channels/{CH}/read", WS_READ, lambda w: {"message_id": w.ids["M"]}),
    Case("POST", "/api/channels/{PC2}/read", PC2_READ, lambda w: {"message_id": w.ids["PM2"]}),
    Case("POST", "/api/channels/{DM}/read", MEMBER_ONLY, lambda w: {"message_id": w.ids["DMM"]}),
    Case("GET", "/api/channels/{CH}/messages", WS_READ),
    Case("GET", "/api/channels/{PC2}/messages", PC2_READ),
    Case("GET", "/api/channels/{DM}/messages", MEMBER_ONLY),
    Case("POST", "/api/channels/{CH}/messages", MEMBER_WRITE_201, {"content": "hi"}),
    Case("POST", "/api/channels/{PC}/messages", MEMBER_WRITE_201, {"content": "hi"}),
    Case(
        "POST", "/api/channels/{PC2}/messages", (R401, 404, 404, 201, 403, 404), {"content": "hi"}
    ),
    Case("POST", "/api/channels/{DM}/messages", (R401, 404, 404, 201, 404, 404), {"content": "hi"}),
    Case("GET", "/api/messages/{M}", WS_READ),
    Case("GET", "/api/messages/{PM2}", MEMBER_ONLY),
    Case("GET", "/api/messages/{DMM}", MEMBER_ONLY),
    Case("PATCH", "/api/messages/{M}", (R401, 404, 403, 200, 403, 404), {"content": "edited"}),
    Case("PATCH", "/api/messages/{DMM}", MEMBER_ONLY, {"content": "edited"}),
    Case("DELETE", "/api/messages/{M}", (R401, 404, 403, 204, 204, 404)),
    Case("DELETE", "/api/messages/{DMM}", (R401, 404, 404, 204, 404, 404)),
    Case("PUT", "/api/messages/{M}/reactions/thumbsup", MEMBER_WRITE),
    Case("PUT", "/api/messages/{PM2}/reactions/thumbsup", MEMBER_ONLY),
    Case("DELETE", "/api/messages/{M}/reactions/thumbsup", (R401, 404, 403, 204, 204, 404)),
    Case("GET", "/api/workspaces/{W}/search", WS_READ, query="?q=hello"),
    Case("GET", "/api/events", WS_READ, query="?topic=channel:{CH}"),
    Case("GET", "/api/events", (R401, 404, 200, 200, 200, 404), query="?topic=channel:{PC}"),
    Case("GET", "/api/events", MEMBER_ONLY, query="?topic=channel:{PC2}"),
    Case("GET", "/api/events", MEMBER_ONLY, query="?topic=channel:{DM}"),
]
CASES += [Case(c.method, c.path, c.expect, c.body, c.query, chat=True) for c in CHAT_CASES]

WEBHOOK_CASES = [
    Case(
        "POST",
        "/api/workspaces/{W}/webhooks",
        WS_ADMIN_201,
        {"url": "http://93.184.216.34/hook", "event_types": ["task.*"], "active": False},
    ),
    Case("GET", "/api/workspaces/{W}/webhooks", WS_ADMIN),
    Case("GET", "/api/workspaces/{W}/webhooks/{WH}", WS_ADMIN),
    Case("PATCH", "/api/workspaces/{W}/webhooks/{WH}", WS_ADMIN, {"description": "CI"}),
    Case("DELETE", "/api/workspaces/{W}/webhooks/{WH}", WS_ADMIN_204),
    Case("POST", "/api/workspaces/{W}/webhooks/{WH}/test", WS_ADMIN),
    Case("GET", "/api/workspaces/{W}/webhooks/{WH}/deliveries", WS_ADMIN),
    Case(
        "POST",
        "/api/workspaces/{W}/webhooks/{WH}/deliveries/{WD}/redeliver",
        (R401, 404, 403, 403, 202, 404),
    ),
    # another workspace's webhook is not reachable through W, not even by W's admin
    Case("GET", "/api/workspaces/{W}/webhooks/{WH2}", (R401, 404, 403, 403, 404, 404)),
    Case("GET", "/api/workspaces/{W2}/webhooks/{WH}", (R401, 404, 404, 404, 404, 404)),
]
CASES += [Case(c.method, c.path, c.expect, c.body, c.query, webhooks=True) for c in WEBHOOK_CASES]

# Documents and files (tests/world.py add_documents): D and F were made by member, QD and
# QF (in the private Q) by admin. Deleting is for the creator or a project admin.
CREATOR_OR_ADMIN_204 = (R401, 404, 403, 204, 204, 404)
DOCUMENT_CASES = [
    Case("POST", "/api/projects/{P}/documents", MEMBER_WRITE_201, {"title": "New"}),
    Case("POST", "/api/projects/{Q}/documents", PRIVATE_WRITE_201, {"title": "New"}),
    Case("GET", "/api/projects/{P}/documents", WS_READ),
    Case("GET", "/api/projects/{Q}/documents", PRIVATE_READ),
    Case("GET", "/api/documents/{D}", WS_READ),
    Case("GET", "/api/documents/{QD}", PRIVATE_READ),
    Case(
        "PUT", "/api/documents/{D}", MEMBER_WRITE, {"title": "T", "content": "c", "base_version": 1}
    ),
    Case(
        "PUT",
        "/api/documents/{QD}",
        PRIVATE_READ,
        {"title": "T", "content": "c", "base_version": 1},
    ),
    Case("DELETE", "/api/documents/{D}", CREATOR_OR_ADMIN_204),
    Case("DELETE", "/api/documents/{QD}", (R401, 404, 404, 404, 204, 404)),
    Case("GET", "/api/documents/{D}/versions", WS_READ),
    Case("GET", "/api/documents/{QD}/versions", PRIVATE_READ),
    Case("GET", "/api/documents/{D}/versions/1", WS_READ),
    Case("GET", "/api/documents/{QD}/versions/1", PRIVATE_READ),
    Case("POST", "/api/documents/{D}/versions/1/restore", MEMBER_WRITE),
    Case("POST", "/api/documents/{QD}/versions/1/restore", PRIVATE_READ),
    Case("POST", "/api/projects/{P}/files", MEMBER_WRITE_201, upload=True),
    Case("POST", "/api/projects/{Q}/files", PRIVATE_WRITE_201, upload=True),
    Case("GET", "/api/projects/{P}/files", WS_READ),
    Case("GET", "/api/projects/{Q}/files", PRIVATE_READ),
    Case("GET", "/api/files/{F}", WS_READ),
    Case("GET", "/api/files/{QF}", PRIVATE_READ),
    Case("GET", "/api/files/{F}/download", WS_READ),
    Case("GET", "/api/files/{QF}/download", PRIVATE_READ),
    Case("DELETE", "/api/files/{F}", CREATOR_OR_ADMIN_204),
    Case("DELETE", "/api/files/{QF}", (R401, 404, 404, 404, 204, 404)),
    Case("GET", "/api/events", WS_READ, query="?topic=project:{P}"),
    Case(
        "POST", "/api/ai/search", WS_READ, lambda w: {"query": "notes", "workspace_id": w.ids["W"]}
    ),
    Case(
        "POST",
        "/api/ai/search",
        PRIVATE_READ,
        lambda w: {"query": "notes", "workspace_id": w.ids["W"], "project_id": w.ids["Q"]},
    ),
]
CASES += [
    Case(c.method, c.path, c.expect, c.body, c.query, documents=True, upload=c.upload)
    for c in DOCUMENT_CASES
]
SIGNED_IN = (R401, 200, 200, 200, 200, 200)
OWNER = (R401, 404, 404, 200, 404, 404)
AI_CASES = [
    Case("GET", "/api/ai/health", SIGNED_IN),
    Case("GET", "/api/ai/conversations", SIGNED_IN),
    Case(
        "POST",
        "/api/ai/conversations",
        (R401, 404, 201, 201, 201, 404),
        lambda w: {"workspace_id": w.ids["W"]},
    ),
    Case("GET", "/api/ai/conversations/{C}", OWNER),
    Case("DELETE", "/api/ai/conversations/{C}", (R401, 404, 404, 204, 404, 404)),
    # No model is configured here: the owner gets 503 ai_unavailable, everyone else 404.
    Case(
        "POST",
        "/api/ai/conversations/{C}/messages",
        (R401, 404, 404, 503, 404, 404),
        {"content": "hi"},
    ),
    Case("POST", "/api/ai/actions/{A}/confirm", OWNER),
    Case("GET", "/api/prompts", SIGNED_IN),
    Case("POST", "/api/prompts", (R401, 201, 201, 201, 201, 201), {"name": "N", "content": "C"}),
    Case(
        "POST",
        "/api/prompts",
        (R401, 404, 403, 403, 201, 404),
        lambda w: {"name": "N", "content": "C", "workspace_id": w.ids["W"], "shared": True},
    ),
    Case("GET", "/api/prompts/{PR}", OWNER),
    Case("GET", "/api/prompts/{SPR}", WS_READ),
    Case("PATCH", "/api/prompts/{PR}", OWNER, {"name": "Renamed"}),
    Case("PATCH", "/api/prompts/{SPR}", WS_ADMIN, {"name": "Renamed"}),
    Case("DELETE", "/api/prompts/{PR}", (R401, 404, 404, 204, 404, 404)),
    Case("DELETE", "/api/prompts/{SPR}", WS_ADMIN_204),
]
CASES += [Case(c.method, c.path, c.expect, c.body, c.query, ai=True) for c in AI_CASES]
CASES += [
    # No model here: whoever may read the channel gets 503 ai_unavailable.
    Case(
        "POST",
        "/api/ai/summarize",
        (R401, 404, 503, 503, 503, 404),
        lambda w: {"channel_id": w.ids["CH"]},
        chat=True,
    ),
    Case(
        "POST",
        "/api/ai/summarize",
        (R401, 404, 404, 503, 404, 404),
        lambda w: {"channel_id": w.ids["PC2"]},
        chat=True,
    ),
]
# Licensing. The license status is for site superusers and workspace admins (the outsider
# is admin of W2). Licensed features are checked with a license in force: the case puts
# one signed by the tests' own key pair into the running app (tests/licensing/keys.py),
# so who may call the route is checked here, and what open-source mode answers
# (403 license_required, to admins only) in tests/licensing/test_routes.py.
CASES += [
    Case("GET", "/api/license", (R401, 200, 403, 403, 200, 200)),
    Case("GET", "/api/workspaces/{W}/ai/usage", WS_ADMIN, licensed=True),
]


def _changes_state(case: Case, role: str) -> bool:
    """Whether ``role``'s call may change what the next role finds: a successful write."""
    return case.method not in ("GET", "HEAD") and 200 <= case.expect[ROLES.index(role)] < 300


async def _world_for(client: httpx.AsyncClient, app: FastAPI, case: Case) -> World:
    world = await build_world(client, app, chat=case.chat)
    if case.webhooks:
        await add_webhooks(world)
    if case.documents:
        await add_documents(world)
    if case.ai:
        await add_ai(world)
    if case.clients:
        await add_clients(world)
    if case.automations:
        await add_automations(world)
    if case.licensed:
        install_license(app, features=sorted(FEATURES))
    return world


@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
async def test_route_as_each_role(make_settings, database_url, case: Case):
    """The route as each of the six roles. Roles share one world (app, database and
    fixtures) while calls leave it as built — denials and reads; after a successful write
    the next role gets a new one. Writers go last, so most rows build one or two worlds
    rather than six (the suite's largest cost)."""
    order = sorted(ROLES, key=lambda role: _changes_state(case, role))
    runner: AppClient | None = None
    world: World | None = None
    try:
        for role in order:
            if world is None:
                if runner is not None:
                    await runner.close()
                    await _empty_tables(database_url)
                runner = AppClient()
                app = create_app(make_settings())
                world = await _world_for(await runner.start(app), app, case)
            body = case.body(world) if callable(case.body) else case.body
            path = case.path + case.query
            if case.upload:
                upload = {"file": ("notes.md", b"# Notes")}
                response = await world.call(role, case.method, path, files=upload)
            else:
                response = await world.call(role, case.method, path, json=body)
            expected = case.expect[ROLES.index(role)]
            assert response.status_code == expected, (role, case.label, response.text)
            if expected >= 400:
                assert_error(response, expected, response.json()["code"])
                assert (
                    response.json()["code"]
                    == {
                        401: "not_authenticated",
                        403: "forbidden",
                        404: "not_found",
                        409: "conflict",
                        503: "ai_unavailable",
                    }[expected]
                ), (role, case.label)
            if _changes_state(case, role):
                world = None
    finally:
        if runner is not None:
            await runner.close()


def case_ids(path: str) -> list[str]:
    return re.findall(r"{(\w+)}", path)


def test_matrix_covers_every_route(app):
    """Every route of these areas has at least one row (a new route needs one).

    Routes are read from the OpenAPI document: FastAPI keeps included routers' routes
    out of ``app.routes``, which once made this test check nothing."""
    prefixes = (
        "/api/workspaces",
        "/api/teams",
        "/api/projects",
        "/api/events",
        "/api/admin",
        "/api/tasks",
        "/api/columns",
        "/api/me",
        "/api/channels",
        "/api/messages",
        "/api/documents",
        "/api/files",
        "/api/ai",
        "/api/prompts",
        "/api/license",
    )
    expected = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path.startswith(prefixes)
        for method in operations
    }
    assert len(expected) > 60  # the areas above: never an empty (vacuous) check
    patterns = {
        route: re.compile("^" + re.sub(r"{\w+}", "[^/]+", route[1]) + "$") for route in expected
    }
    placeholder = "01a20000-0000-7000-8000-000000000000"
    covered = set()
    for case in CASES:
        path = case.path
        for name in case_ids(path):
            path = path.replace("{" + name + "}", placeholder)
        for (method, template), pattern in patterns.items():
            if method == case.method and pattern.match(path):
                covered.add((method, template))
    assert expected - covered == set(), f"routes without an authorization row: {expected - covered}"
