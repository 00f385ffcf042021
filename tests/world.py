"""A populated workspace with one user per role, for authorization tests.

``await build_world(client, app)`` creates, through the API where it matters:

* users ``admin`` (creator of workspace W), ``member``, ``viewer``, ``outsider`` (not in
  W, admin of their own workspace W2), ``superuser`` (site admin, not in W),
  ``bystander`` (a W member to act on), ``teammate`` (a W member in team T),
  ``newcomer`` (an account in no workspace);
* team T (with ``teammate``), public project P and private project Q in W (created by
  ``admin``), an invitation I, a grant on P for ``teammate``, and in W2 a project P2, a
  team T2 and an invitation I2;
* P's columns C (todo), C_doing, C_done; task TK in P and QT in Q (both by ``admin``).

With ``chat=True`` also (see :func:`add_chat`): public channel CH (by ``admin``),
private channel PC (by ``admin``, with ``member`` and ``viewer``), private channel PC2
(by ``bystander``, with ``member``; ``admin`` is not in it), DM (``member`` and
``bystander``), messages M (in CH), PM2 (in PC2) and DMM (in DM), all by ``member``,
and channel CH2 in W2.

Users are inserted directly (one shared password hash) and get access tokens minted
with the test secret, which keeps a world cheap enough to build per test.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI

from huddle.auth.models import User
from huddle.core.time import utcnow
from huddle.core.tokens import encode_access_token
from tests.conftest import TEST_SECRET

ROLES = ("anonymous", "outsider", "viewer", "member", "admin", "superuser")
_HASH: dict[str, str] = {}


@dataclass
class World:
    client: httpx.AsyncClient
    app: FastAPI
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)

    def ids_uuid(self, name: str) -> uuid.UUID:
        return uuid.UUID(self.ids[name])

    async def call(self, role: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers[role], **kwargs.pop("headers", {})}
        return await self.client.request(method, path.format(**self.ids), headers=headers, **kwargs)

    async def ok(self, role: str, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        response = await self.call(role, method, path, **kwargs)
        assert response.status_code == expect, (method, path, response.status_code, response.text)
        return response.json() if response.content else None


async def add_user(
    app: FastAPI, name: str, *, superuser: bool = False
) -> tuple[dict[str, Any], dict[str, str]]:
    """Insert an active user; return (user fields, Bearer headers)."""
    if "hash" not in _HASH:
        _HASH["hash"] = await app.state.auth.hasher.hash("correct horse battery")
    async with app.state.db.write_session() as session:
        user = User(
            email=f"{name}@example.com",
            username=name,
            full_name=name.title(),
            hashed_password=_HASH["hash"],
            is_superuser=superuser,
        )
        session.add(user)
        await session.commit()
        user_id = user.id
    token = encode_access_token(user_id, TEST_SECRET, utcnow(), 900)
    fields = {"id": str(user_id), "username": name, "email": f"{name}@example.com"}
    return fields, {"Authorization": f"Bearer {token}"}


async def build_world(client: httpx.AsyncClient, app: FastAPI, *, chat: bool = False) -> World:
    world = World(client=client, app=app)
    world.headers["anonymous"] = {}
    for name in ("admin", "member", "viewer", "outsider", "bystander", "teammate", "newcomer"):
        world.users[name], world.headers[name] = await add_user(app, name)
    world.users["superuser"], world.headers["superuser"] = await add_user(
        app, "superuser", superuser=True
    )
    for name, user in world.users.items():
        world.ids[f"{name}_id"] = user["id"]

    ws = await world.ok("admin", "POST", "/api/workspaces", 201, json={"name": "Acme"})
    world.ids["W"] = ws["id"]
    for name, role in (
        ("member", "member"),
        ("viewer", "viewer"),
        ("bystander", "member"),
        ("teammate", "member"),
    ):
        await world.ok(
            "admin",
            "POST",
            "/api/workspaces/{W}/members",
            201,
            json={"user_id": world.users[name]["id"], "role": role},
        )
    team = await world.ok(
        "admin",
        "POST",
        "/api/workspaces/{W}/teams",
        201,
        json={"name": "Design", "handle": "design"},
    )
    world.ids["T"] = team["id"]
    await world.ok(
        "admin", "POST", "/api/teams/{T}/members", 201, json={"user_id": world.ids["teammate_id"]}
    )
    world.ids["P"] = (
        await world.ok(
            "admin", "POST", "/api/workspaces/{W}/projects", 201, json={"name": "Public"}
        )
    )["id"]
    world.ids["Q"] = (
        await world.ok(
            "admin",
            "POST",
            "/api/workspaces/{W}/projects",
            201,
            json={"name": "Secret", "is_private": True},
        )
    )["id"]
    await world.ok(
        "admin", "PUT", "/api/projects/{P}/permissions/{teammate_id}", json={"role": "admin"}
    )
    columns = await world.ok("admin", "GET", "/api/projects/{P}/columns")
    world.ids["C"], world.ids["C_doing"], world.ids["C_done"] = (c["id"] for c in columns)
    task = await world.ok(
        "admin", "POST", "/api/projects/{P}/tasks", 201, json={"title": "Ship it"}
    )
    world.ids["TK"] = task["id"]
    secret = await world.ok(
        "admin", "POST", "/api/projects/{Q}/tasks", 201, json={"title": "Hidden"}
    )
    world.ids["QT"] = secret["id"]
    invitation = await world.ok(
        "admin", "POST", "/api/workspaces/{W}/invitations", 201, json={"email": "guest@example.com"}
    )
    world.ids["I"] = invitation["id"]

    ws2 = await world.ok("outsider", "POST", "/api/workspaces", 201, json={"name": "Other"})
    world.ids["W2"] = ws2["id"]
    world.ids["P2"] = (
        await world.ok(
            "outsider", "POST", "/api/workspaces/{W2}/projects", 201, json={"name": "Theirs"}
        )
    )["id"]
    world.ids["T2"] = (
        await world.ok(
            "outsider",
            "POST",
            "/api/workspaces/{W2}/teams",
            201,
            json={"name": "Ops", "handle": "ops"},
        )
    )["id"]
    world.ids["I2"] = (
        await world.ok(
            "outsider",
            "POST",
            "/api/workspaces/{W2}/invitations",
            201,
            json={"email": "x@example.com"},
        )
    )["id"]
    if chat:
        await add_chat(world)
    return world


async def add_chat(world: World) -> None:
    async def channel(role: str, wid: str, **body: Any) -> str:
        created = await world.ok(
            role, "POST", f"/api/workspaces/{{{wid}}}/channels", 201, json=body
        )
        return str(created["id"])

    async def message(channel: str, content: str) -> str:
        posted = await world.ok(
            "member",
            "POST",
            f"/api/channels/{{{channel}}}/messages",
            201,
            json={"content": content},
        )
        return str(posted["id"])

    ids = world.ids
    ids["CH"] = await channel("admin", "W", name="general")
    ids["PC"] = await channel(
        "admin", "W", name="core", is_private=True, member_ids=[ids["member_id"], ids["viewer_id"]]
    )
    ids["PC2"] = await channel(
        "bystander", "W", name="side", is_private=True, member_ids=[ids["member_id"]]
    )
    dm = await world.ok(
        "member", "POST", "/api/workspaces/{W}/dms", 201, json={"user_ids": [ids["bystander_id"]]}
    )
    ids["DM"] = dm["id"]
    ids["M"] = await message("CH", "hello everyone")
    ids["PM2"] = await message("PC2", "side talk")
    ids["DMM"] = await message("DM", "just us")
    ids["CH2"] = await channel("outsider", "W2", name="elsewhere")


def unknown_id() -> str:
    return str(uuid.uuid4())


async def events(world: World, role: str, **params: Any) -> list[dict[str, Any]]:
    """Dispatch what is committed, then read /api/events as ``role``."""
    await world.app.state.dispatcher.flush()
    query = {k: (v.format(**world.ids) if isinstance(v, str) else v) for k, v in params.items()}
    response = await world.client.get("/api/events", params=query, headers=world.headers[role])
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def add_webhooks(world: World) -> None:
    """Webhook WH of W (inactive, so nothing is ever sent) with a delivery WD; WH2 of W2.

    Inserted directly: their URL is a closed local port that the API itself would refuse.
    """
    from huddle.events.models import Webhook, WebhookDelivery

    async with world.app.state.db.write_session() as session:
        hooks = {}
        for name, wid in (("WH", "W"), ("WH2", "W2")):
            hook = Webhook(
                workspace_id=world.ids_uuid(wid),
                url="http://127.0.0.1:9/hook",
                secret="s" * 32,
                event_types=["*"],
                active=False,
            )
            session.add(hook)
            hooks[name] = hook
        await session.flush()
        delivery = WebhookDelivery(
            webhook_id=hooks["WH"].id, event_type="task.created", status="failed", attempts=8
        )
        session.add(delivery)
        await session.flush()
        world.ids.update({name: str(hook.id) for name, hook in hooks.items()})
        world.ids["WD"] = str(delivery.id)
        await session.commit()


async def add_clients(world: World) -> None:
    """Client CL of W (by admin) and CL2 of W2 (by outsider)."""
    for name, role, wid in (("CL", "admin", "W"), ("CL2", "outsider", "W2")):
        created = await world.ok(
            role, "POST", f"/api/workspaces/{{{wid}}}/clients", 201, json={"name": f"Client {name}"}
        )
        world.ids[name] = created["id"]


async def add_automations(world: World) -> None:
    """Automation rules AU in P and QAU in Q (by admin), AU2 in P2 (by outsider)."""
    rule = {
        "name": "Urgent first",
        "trigger": {"event": "task.created", "priority": "urgent"},
        "actions": [{"type": "set_priority", "priority": "high"}],
    }
    for name, role, project in (
        ("AU", "admin", "P"),
        ("QAU", "admin", "Q"),
        ("AU2", "outsider", "P2"),
    ):
        created = await world.ok(
            role, "POST", f"/api/projects/{{{project}}}/automations", 201, json=rule
        )
        world.ids[name] = created["id"]


async def add_documents(world: World) -> None:
    """Document D and file F in P (by member); QD and QF in the private Q (by admin)."""
    for name, role, project in (("D", "member", "P"), ("QD", "admin", "Q")):
        doc = await world.ok(
            role,
            "POST",
            f"/api/projects/{{{project}}}/documents",
            201,
            json={"title": f"Doc {name}", "content": "# Notes\n\nSome text."},
        )
        world.ids[name] = doc["id"]
    for name, role, project in (("F", "member", "P"), ("QF", "admin", "Q")):
        response = await world.call(
            role,
            "POST",
            f"/api/projects/{{{project}}}/files",
            files={"file": (f"{name}.md", b"# File\n\nSome text.")},
        )
        assert response.status_code == 201, response.text
        world.ids[name] = response.json()["id"]


async def add_ai(world: World) -> None:
    """Conversation C of ``member`` in W; pending action A of it (deleting task MT, made
    by ``member`` in P); ``member``'s own prompt PR and ``admin``'s prompt SPR shared in W."""
    from datetime import timedelta

    from huddle.ai.models import AIPendingAction

    conversation = await world.ok(
        "member", "POST", "/api/ai/conversations", 201, json={"workspace_id": world.ids["W"]}
    )
    world.ids["C"] = conversation["id"]
    task = await world.ok("member", "POST", "/api/projects/{P}/tasks", 201, json={"title": "Mine"})
    world.ids["MT"] = task["id"]
    async with world.app.state.db.write_session() as session:
        action = AIPendingAction(
            user_id=world.ids_uuid("member_id"),
            workspace_id=world.ids_uuid("W"),
            conversation_id=uuid.UUID(conversation["id"]),
            tool="delete_task",
            args={"task_id": task["id"]},
            tool_call_id="call_matrix",
            expires_at=utcnow() + timedelta(minutes=10),
        )
        session.add(action)
        await session.commit()
        world.ids["A"] = str(action.id)
    mine = await world.ok(
        "member",
        "POST",
        "/api/prompts",
        201,
        json={"name": "Mine", "content": "Be brief.", "workspace_id": world.ids["W"]},
    )
    world.ids["PR"] = mine["id"]
    shared = await world.ok(
        "admin",
        "POST",
        "/api/prompts",
        201,
        json={
            "name": "Team",
            "content": "Answer in French.",
            "workspace_id": world.ids["W"],
            "shared": True,
        },
    )
    world.ids["SPR"] = shared["id"]
