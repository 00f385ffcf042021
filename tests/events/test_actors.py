"""Every event names the user who caused it, on every path that emits events.

DESIGN.md §7: each envelope carries ``actor = {kind, id?, ...}``. These tests call every
route (and WebSocket frame) that records events, one call at a time and each as a
specific user, then read the rows that call added to the ``events`` table (by ``id``: a
``seq`` only comes once the dispatcher has run) and check their types and actor.

The run must also produce every type in the catalog, and touch every state-changing
route: a new event type, or a new route, fails here until its path is exercised below
(or listed, with the reason, in ``EMITTED_ELSEWHERE`` / ``NO_EVENTS``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from huddle.app import create_app
from huddle.config import Settings
from huddle.events.catalog import CATALOG
from huddle.events.models import Event
from huddle.tasks import ranking
from tests.e2e.server import free_port
from tests.realtime.wsclient import Client, serve, token_of
from tests.world import World, add_user, build_world

#: Catalog types no user-facing HTTP route or frame can produce, with the reason.
#: (Empty today: even ``column.rebalanced`` is reached below through the move route.)
EMITTED_ELSEWHERE: dict[str, str] = {}

#: State-changing routes that record no event, with the reason.
NO_EVENTS: dict[tuple[str, str], str] = {
    ("POST", "/api/auth/register"): "a new account belongs to no workspace: nobody to tell",
    ("POST", "/api/auth/token"): "signing in changes no shared state",
    ("POST", "/api/auth/refresh"): "token rotation changes no shared state",
    ("POST", "/api/auth/logout"): "token revocation changes no shared state",
    ("PATCH", "/api/auth/me"): "own profile edits are not events (user.* is site admin only)",
    ("POST", "/api/auth/api-tokens"): "personal credentials, not shared state",
    ("DELETE", "/api/auth/api-tokens/{token_id}"): "personal credentials, not shared state",
    ("POST", "/api/workspaces/{wid}/webhooks/{hid}/test"): "a ping is a delivery, not an event",
    (
        "POST",
        "/api/workspaces/{wid}/webhooks/{hid}/deliveries/{did}/redeliver",
    ): "re-sends an existing delivery: no change to announce",
    ("POST", "/api/ai/search"): "a search (POST for its body) changes nothing",
    ("POST", "/api/ai/conversations"): "a conversation is its owner's own, not shared state",
    ("DELETE", "/api/ai/conversations/{cid}"): "a conversation is its owner's own",
    ("POST", "/api/prompts"): "prompt templates are assistant settings, not in the catalog",
    ("PATCH", "/api/prompts/{prid}"): "prompt templates are assistant settings",
    ("DELETE", "/api/prompts/{prid}"): "prompt templates are assistant settings",
}

#: State-changing routes whose events are checked elsewhere, with where and why.
CHECKED_ELSEWHERE: dict[tuple[str, str], str] = {
    ("POST", "/api/ai/conversations/{cid}/messages"): (
        "needs a model; its tools' events record the agent actor: tests/ai/test_assistant.py"
    ),
    ("POST", "/api/ai/actions/{aid}/confirm"): (
        "runs a tool as the agent actor of the call that proposed it: tests/ai/test_assistant.py"
    ),
    ("POST", "/api/ai/summarize"): "needs a model; records nothing: tests/ai/test_chat_ai.py",
}


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """Webhooks may point at loopback: the ping goes to a closed local port, never out."""
    return make_settings(webhook_allow_private=True)


def _route_of(app: FastAPI, method: str, url: str) -> tuple[str, str]:
    """The (method, OpenAPI path template) that serves ``url`` (the most literal one)."""
    path = urlsplit(url).path
    matches = [
        template
        for template, operations in app.openapi()["paths"].items()
        if method.lower() in operations
        and re.fullmatch(re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)), path)
    ]
    assert matches, f"no route serves {method} {path}"
    return method, min(matches, key=lambda template: template.count("{"))


def _state_changing_routes(app: FastAPI) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
        if method.upper() in {"POST", "PUT", "PATCH", "DELETE"}
    }


async def _last_event_id(app: FastAPI) -> int:
    async with app.state.db.read_session() as session:
        return int(await session.scalar(select(func.coalesce(func.max(Event.id), 0))) or 0)


async def _events_after(app: FastAPI, after_id: int) -> list[Event]:
    async with app.state.db.read_session() as session:
        rows = await session.scalars(select(Event).where(Event.id > after_id).order_by(Event.id))
        return list(rows)


@dataclass
class Audit:
    """Makes calls as one user each, and checks the events each call recorded."""

    world: World
    last_id: int
    types_seen: set[str] = field(default_factory=set)
    routes_called: set[tuple[str, str]] = field(default_factory=set)
    last: list[Event] = field(default_factory=list)  # what the latest call recorded

    @classmethod
    async def start(cls, world: World) -> Audit:
        return cls(world, await _last_event_id(world.app))

    def actor_of(self, role: str) -> dict[str, str]:
        return {"kind": "user", "id": self.world.ids[f"{role}_id"]}

    async def check(self, label: str, role: str, *allowed: list[str]) -> list[Event]:
        """The events since the last check are one of the ``allowed`` lists of types (in
        order), all by ``role``."""
        new = await _events_after(self.world.app, self.last_id)
        assert [e.type for e in new] in allowed, (label, [e.type for e in new])
        for event in new:
            assert event.actor == self.actor_of(role), (label, event.type, event.actor)
        if new:
            self.last_id = new[-1].id
        self.last = new
        self.types_seen.update(e.type for e in new)
        return new

    async def call(
        self,
        role: str,
        method: str,
        path: str,
        expected: list[str],
        expect: int = 200,
        **kwargs: Any,
    ) -> Any:
        """``world.ok(...)`` as ``role``, then: it emitted ``expected``, each by ``role``.

        Only a route listed in ``NO_EVENTS`` may emit nothing, and it must.
        """
        route = _route_of(self.world.app, method, path.format(**self.world.ids))
        assert bool(expected) != (route in NO_EVENTS), (route, expected)
        body = await self.world.ok(role, method, path, expect, **kwargs)
        self.routes_called.add(route)
        await self.check(f"{role} {method} {path}", role, expected)
        return body


async def _newcomer(world: World, name: str) -> None:
    world.users[name], world.headers[name] = await add_user(world.app, name)
    world.ids[f"{name}_id"] = world.users[name]["id"]


async def _workspaces_and_members(audit: Audit) -> None:
    world, ids, call = audit.world, audit.world.ids, audit.call
    await call("admin", "PATCH", "/api/workspaces/{W}", ["workspace.updated"], json={"name": "A2"})
    created = await call(
        "outsider", "POST", "/api/workspaces", ["workspace.created"], 201, json={"name": "Tmp"}
    )
    ids["W3"] = created["id"]
    await call("outsider", "DELETE", "/api/workspaces/{W3}", ["workspace.deleted"], 204)

    # An admin adds someone: the actor is the admin, not the new member.
    await call(
        "admin",
        "POST",
        "/api/workspaces/{W}/members",
        ["member.added"],
        201,
        json={"user_id": ids["newcomer_id"], "role": "viewer"},
    )
    assert str(audit.last[0].subject_id) == ids["newcomer_id"]
    await call(
        "admin",
        "PATCH",
        "/api/workspaces/{W}/members/{newcomer_id}",
        ["member.role_changed"],
        json={"role": "member"},
    )
    await call(
        "admin", "DELETE", "/api/workspaces/{W}/members/{newcomer_id}", ["member.removed"], 204
    )
    # Leaving: the viewer's private channel (PC) goes too, told to PC and to the viewer.
    await call(
        "viewer",
        "DELETE",
        "/api/workspaces/{W}/members/{viewer_id}",
        ["member.removed", "channel.member_removed", "channel.member_removed"],
        204,
    )

    await _newcomer(world, "joiner")
    invitation = await call(
        "admin",
        "POST",
        "/api/workspaces/{W}/invitations",
        ["invitation.created"],
        201,
        json={"email": "joiner@example.com"},
    )
    await call(
        "joiner",
        "POST",
        "/api/invitations/accept",
        ["member.added", "invitation.accepted"],
        json={"token": invitation["token"]},
    )
    await call(
        "admin", "DELETE", "/api/workspaces/{W}/invitations/{I}", ["invitation.revoked"], 204
    )


async def _teams(audit: Audit) -> None:
    ids, call = audit.world.ids, audit.call
    team = await call(
        "admin",
        "POST",
        "/api/workspaces/{W}/teams",
        ["team.created"],
        201,
        json={"name": "Ops", "handle": "ops"},
    )
    ids["T3"] = team["id"]
    await call("admin", "PATCH", "/api/teams/{T3}", ["team.updated"], json={"name": "Run"})
    await call(
        "admin",
        "POST",
        "/api/teams/{T3}/members",
        ["team.member_added"],
        201,
        json={"user_id": ids["member_id"]},
    )
    await call(
        "admin", "DELETE", "/api/teams/{T3}/members/{member_id}", ["team.member_removed"], 204
    )
    await call("admin", "DELETE", "/api/teams/{T3}", ["team.deleted"], 204)


async def _clients(audit: Audit) -> None:
    ids, call = audit.world.ids, audit.call
    client = await call(
        "admin",
        "POST",
        "/api/workspaces/{W}/clients",
        ["client.created"],
        201,
        json={"name": "Initech", "contact_emails": ["bill@initech.example"]},
    )
    ids["CLA"] = client["id"]
    await call(
        "admin",
        "PATCH",
        "/api/workspaces/{W}/clients/{CLA}",
        ["client.updated"],
        json={"notes": "x"},
    )
    await call("admin", "DELETE", "/api/workspaces/{W}/clients/{CLA}", ["client.deleted"], 204)


async def _webhooks(audit: Audit) -> None:
    ids, call = audit.world.ids, audit.call
    # Inactive: no event of this run is queued for it; the ping is sent all the same.
    hook = await call(
        "admin",
        "POST",
        "/api/workspaces/{W}/webhooks",
        ["webhook.created"],
        201,
        json={
            "url": f"http://127.0.0.1:{free_port()}/hook",
            "event_types": ["task.*"],
            "active": False,
        },
    )
    ids["HOOK"] = hook["id"]
    await call(
        "admin",
        "PATCH",
        "/api/workspaces/{W}/webhooks/{HOOK}",
        ["webhook.updated"],
        json={"description": "CI"},
    )
    ping = await call("admin", "POST", "/api/workspaces/{W}/webhooks/{HOOK}/test", [])
    assert ping["status"] == "failed"  # nothing listens on that port
    ids["PING"] = ping["id"]
    await call(
        "admin",
        "POST",
        "/api/workspaces/{W}/webhooks/{HOOK}/deliveries/{PING}/redeliver",
        [],
        202,
    )
    await call("admin", "DELETE", "/api/workspaces/{W}/webhooks/{HOOK}", ["webhook.deleted"], 204)


async def _projects(audit: Audit) -> None:
    """A plain member creates and runs a project of their own."""
    ids, call = audit.world.ids, audit.call
    project = await call(
        "member",
        "POST",
        "/api/workspaces/{W}/projects",
        ["project.created"],
        201,
        json={"name": "Side project"},
    )
    ids["MP"] = project["id"]
    await call("member", "PATCH", "/api/projects/{MP}", ["project.updated"], json={"name": "S2"})
    grant = {"role": "member"}
    await call(
        "member",
        "PUT",
        "/api/projects/{MP}/permissions/{bystander_id}",
        ["project.permission_set"],
        json=grant,
    )
    await call(
        "member",
        "DELETE",
        "/api/projects/{MP}/permissions/{bystander_id}",
        ["project.permission_removed"],
        204,
    )
    await call(
        "member",
        "PUT",
        "/api/projects/{MP}/team-permissions/{T}",
        ["project.permission_set"],
        json=grant,
    )
    await call(
        "member",
        "DELETE",
        "/api/projects/{MP}/team-permissions/{T}",
        ["project.permission_removed"],
        204,
    )
    await call(
        "member",
        "POST",
        "/api/workspaces/{W}/channels",
        ["channel.created"],
        201,
        json={"name": "side-project", "project_id": ids["MP"]},
    )
    # Deleting a project closes its channels, each with its own event by the same user.
    await call(
        "member", "DELETE", "/api/projects/{MP}", ["project.deleted", "channel.deleted"], 204
    )


async def _tasks(audit: Audit) -> None:
    ids, call = audit.world.ids, audit.call
    task = await call(
        "member", "POST", "/api/projects/{P}/tasks", ["task.created"], 201, json={"title": "Mine"}
    )
    ids["MT"] = task["id"]
    await call("member", "PATCH", "/api/tasks/{MT}", ["task.updated"], json={"title": "Mine!"})
    await call("member", "PATCH", "/api/tasks/{MT}", ["task.moved"], json={"status": "in_progress"})
    await call(
        "member", "POST", "/api/tasks/{MT}/move", ["task.moved"], json={"column_id": ids["C_done"]}
    )
    await call("member", "DELETE", "/api/tasks/{MT}", ["task.deleted"], 204)
    # A project admin deletes someone else's task.
    await call("admin", "DELETE", "/api/tasks/{TK}", ["task.deleted"], 204)


async def _documents(audit: Audit) -> None:
    ids, call = audit.world.ids, audit.call
    doc = await call(
        "member",
        "POST",
        "/api/projects/{P}/documents",
        ["document.created"],
        201,
        json={"title": "Plan", "content": "v1"},
    )
    ids["MD"] = doc["id"]
    saved = {"title": "Plan", "content": "v2", "base_version": 1}
    await call("bystander", "PUT", "/api/documents/{MD}", ["document.updated"], json=saved)
    await call("member", "POST", "/api/documents/{MD}/versions/1/restore", ["document.updated"])
    await call("teammate", "DELETE", "/api/documents/{MD}", ["document.deleted"], 204)
    upload = {"file": ("plan.md", b"# Plan")}
    file = await call(
        "member", "POST", "/api/projects/{P}/files", ["file.uploaded"], 201, files=upload
    )
    ids["MF"] = file["id"]
    await call("member", "DELETE", "/api/files/{MF}", ["file.deleted"], 204)
    await call(
        "member", "POST", "/api/ai/search", [], json={"query": "plan", "workspace_id": ids["W"]}
    )


async def _columns(audit: Audit) -> None:
    """``teammate`` is an admin of project P by grant, not a workspace admin."""
    ids, call = audit.world.ids, audit.call
    review = await call(
        "teammate",
        "POST",
        "/api/projects/{P}/columns",
        ["column.created"],
        201,
        json={"name": "Review"},
    )
    ids["REVIEW"] = review["id"]
    # Workflow rules are project settings: a project admin by grant may set them.
    await call(
        "teammate",
        "PUT",
        "/api/projects/{P}/workflow",
        ["workflow.updated"],
        json={"wip_limits": [{"column_id": ids["REVIEW"], "limit": 5}]},
    )
    # So are automation rules (deleted at once: a rule's runs have their own audit,
    # tests/automation).
    rule = await call(
        "teammate",
        "POST",
        "/api/projects/{P}/automations",
        ["automation.created"],
        201,
        json={
            "name": "Into review",
            "trigger": {"event": "task.moved", "column_id": ids["REVIEW"]},
            "actions": [{"type": "set_priority", "priority": "high"}],
        },
    )
    ids["RULE"] = rule["id"]
    await call(
        "teammate",
        "PATCH",
        "/api/projects/{P}/automations/{RULE}",
        ["automation.updated"],
        json={"enabled": False},
    )
    await call(
        "teammate", "DELETE", "/api/projects/{P}/automations/{RULE}", ["automation.deleted"], 204
    )
    backlog = await call(
        "teammate",
        "POST",
        "/api/projects/{P}/columns",
        ["column.created", "column.reordered"],
        201,
        json={"name": "Backlog", "position": 0},
    )
    ids["BACKLOG"] = backlog["id"]
    await call(
        "teammate", "PATCH", "/api/columns/{REVIEW}", ["column.updated"], json={"name": "QA"}
    )
    await call(
        "teammate", "PATCH", "/api/columns/{REVIEW}", ["column.reordered"], json={"position": 1}
    )
    await call(
        "teammate",
        "PATCH",
        "/api/columns/{REVIEW}",
        ["column.updated", "column.reordered"],
        json={"is_done": True, "position": 0},
    )
    await call("teammate", "DELETE", "/api/columns/{BACKLOG}", ["column.deleted"], 204)
    await _rebalance(audit)
    # A column with cards goes, its cards moving to another column.
    await call("teammate", "DELETE", "/api/columns/{REVIEW}?move_to={C}", ["column.deleted"], 204)


async def _rebalance(audit: Audit) -> None:
    """Two cards take turns moving into the same shrinking gap until ranks grow past
    ``MAX_RANK_LENGTH`` and the column is rebalanced (a handful of moves with the limit
    lowered, as in tests/tasks; a couple of hundred with the real one)."""
    ids, call = audit.world.ids, audit.call
    for name in ("R_X", "R_Y", "R_BOTTOM"):
        task = await call(
            "member",
            "POST",
            "/api/projects/{P}/tasks",
            ["task.created"],
            201,
            json={"title": name, "column_id": ids["REVIEW"]},
        )
        ids[name] = task["id"]
    move = {"column_id": ids["REVIEW"], "before_id": ids["R_BOTTOM"]}
    for step in range(100):
        mover = ("R_X", "R_Y")[step % 2]
        await audit.world.ok("member", "POST", f"/api/tasks/{{{mover}}}/move", json=move)
        tipped = ["column.rebalanced", "task.moved"]
        events = await audit.check(f"move {step}", "member", ["task.moved"], tipped)
        if events[0].type == "column.rebalanced":
            break
    else:
        raise AssertionError("the column was never rebalanced")


async def _channels(audit: Audit) -> None:
    ids, call = audit.world.ids, audit.call
    channel = await call(
        "member",
        "POST",
        "/api/workspaces/{W}/channels",
        ["channel.created"],
        201,
        json={"name": "random"},
    )
    ids["RND"] = channel["id"]
    await call("member", "PATCH", "/api/channels/{RND}", ["channel.updated"], json={"topic": "x"})
    await call("member", "DELETE", "/api/channels/{RND}", ["channel.deleted"], 204)
    await call(
        "admin",
        "POST",
        "/api/channels/{PC}/members",
        ["channel.member_added"],
        201,
        json={"user_id": ids["bystander_id"]},
    )
    # Told to the channel and to the removed user: both by the admin who removed them.
    await call(
        "admin",
        "DELETE",
        "/api/channels/{PC}/members/{bystander_id}",
        ["channel.member_removed", "channel.member_removed"],
        204,
    )
    await call(
        "member",
        "POST",
        "/api/workspaces/{W}/dms",
        ["channel.created"],
        201,
        json={"user_ids": [ids["teammate_id"]]},
    )
    await call(
        "bystander",
        "POST",
        "/api/channels/{CH}/read",
        ["channel.read"],
        json={"message_id": ids["M"]},
    )


async def _messages(audit: Audit) -> None:
    ids, call = audit.world.ids, audit.call
    # A mention's actor is the message's author, not the mentioned user.
    posted = await call(
        "bystander",
        "POST",
        "/api/channels/{CH}/messages",
        ["message.created", "mention"],
        201,
        json={"content": "hi @member"},
    )
    mention = audit.last[1].data
    assert (mention["user_id"], mention["author_id"]) == (ids["member_id"], ids["bystander_id"])
    ids["BM"] = posted["id"]
    await call(
        "bystander",
        "PATCH",
        "/api/messages/{BM}",
        ["message.updated", "mention"],
        json={"content": "hi @member and @design"},
    )
    reply = await call(
        "member",
        "POST",
        "/api/channels/{CH}/messages",
        ["message.created"],
        201,
        json={"content": "a reply", "parent_id": ids["BM"]},
    )
    ids["REPLY"] = reply["id"]
    await call("member", "PUT", "/api/messages/{BM}/reactions/tada", ["reaction.added"])
    await call("member", "DELETE", "/api/messages/{BM}/reactions/tada", ["reaction.removed"], 204)
    await call("member", "DELETE", "/api/messages/{REPLY}", ["message.deleted"], 204)
    # An admin deletes someone else's message: the admin is the actor.
    await call("admin", "DELETE", "/api/messages/{BM}", ["message.deleted"], 204)


async def _site_admin(audit: Audit) -> None:
    call = audit.call
    await call(
        "superuser",
        "PATCH",
        "/api/admin/users/{outsider_id}",
        ["user.updated"],
        json={"is_active": False},
    )
    await call("superuser", "DELETE", "/api/admin/users/{newcomer_id}", ["user.deleted"], 204)
    assert str(audit.last[0].subject_id) == audit.world.ids["newcomer_id"]


async def _accounts(audit: Audit) -> None:
    """The routes excused in ``NO_EVENTS`` really record nothing."""
    call = audit.call
    password = "correct horse battery staple"
    await call(
        "anonymous",
        "POST",
        "/api/auth/register",
        [],
        201,
        json={"email": "registrant@example.com", "username": "registrant", "password": password},
    )
    login = {"username": "registrant", "password": password}
    pair = await call("anonymous", "POST", "/api/auth/token", [], data=login)
    pair = await call(
        "anonymous", "POST", "/api/auth/refresh", [], json={"refresh_token": pair["refresh_token"]}
    )
    await call(
        "anonymous",
        "POST",
        "/api/auth/logout",
        [],
        204,
        json={"refresh_token": pair["refresh_token"]},
    )
    await call("member", "PATCH", "/api/auth/me", [], json={"full_name": "Mem Ber"})
    token = await call("member", "POST", "/api/auth/api-tokens", [], 201, json={"name": "ci"})
    audit.world.ids["TOKEN"] = token["id"]
    await call("member", "DELETE", "/api/auth/api-tokens/{TOKEN}", [], 204)
    # The assistant's own state: conversations and prompt templates.
    chat = await call("member", "POST", "/api/ai/conversations", [], 201, json={})
    audit.world.ids["CONV"] = chat["id"]
    await call("member", "DELETE", "/api/ai/conversations/{CONV}", [], 204)
    prompt = {"name": "P", "content": "Be brief.", "workspace_id": audit.world.ids["W"]}
    made = await call("admin", "POST", "/api/prompts", [], 201, json={**prompt, "shared": True})
    audit.world.ids["PROMPT"] = made["id"]
    await call("admin", "PATCH", "/api/prompts/{PROMPT}", [], json={"name": "Q"})
    await call("admin", "DELETE", "/api/prompts/{PROMPT}", [], 204)


async def test_every_emitting_route_records_its_caller(client, app, monkeypatch):
    monkeypatch.setattr(ranking, "MAX_RANK_LENGTH", 3)  # column.rebalanced in a few moves
    world = await build_world(client, app, chat=True)
    audit = await Audit.start(world)

    await _workspaces_and_members(audit)
    await _teams(audit)
    await _clients(audit)
    await _webhooks(audit)
    await _projects(audit)
    await _tasks(audit)
    await _documents(audit)
    await _columns(audit)
    await _channels(audit)
    await _messages(audit)
    await _site_admin(audit)
    await _accounts(audit)

    assert set(EMITTED_ELSEWHERE) <= set(CATALOG), "stale EMITTED_ELSEWHERE entries"
    missing = set(CATALOG) - audit.types_seen - set(EMITTED_ELSEWHERE)
    assert not missing, f"event types no call here produced: {sorted(missing)}"

    unexercised = _state_changing_routes(app) - audit.routes_called - set(CHECKED_ELSEWHERE)
    assert not unexercised, f"state-changing routes not exercised here: {sorted(unexercised)}"


async def test_message_sent_over_the_socket_records_its_author(
    make_settings: Callable[..., Settings],
):
    """``message.send`` is the only frame that records events (typing and calls are
    ephemeral): it runs ``post_message`` as the socket's user, built by the gateway."""
    live = await serve(create_app(make_settings()))
    try:
        world = await build_world(live.http, live.app, chat=True)
        audit = await Audit.start(world)
        socket = await Client.connect(live.ws_url, token_of(world.headers["bystander"]))
        try:
            await socket.ok("subscribe", topic=f"channel:{world.ids['CH']}")
            sent = await socket.ok("message.send", channel_id=world.ids["CH"], content="@member!")
            await audit.check("message.send", "bystander", ["message.created", "mention"])
            # The envelope the socket delivers carries the same actor as the row.
            envelope = await socket.event("message.created")
            assert envelope["subject_id"] == sent["id"]
            assert envelope["actor"] == audit.actor_of("bystander")
            await socket.ok(
                "message.send",
                channel_id=world.ids["CH"],
                content="in the thread",
                parent_id=sent["id"],
            )
            await audit.check("message.send reply", "bystander", ["message.created"])
        finally:
            await socket.close()
    finally:
        await live.stop()
