"""``huddle demo``: a realistic workspace to try Huddle with, in one command.

It drives Huddle's own REST API in process (the app with its lifespan, over an ASGI
transport), so the demo data is made exactly as a client would make it — events,
search entries and unread counts included. Seeded: four users with known passwords
(admin ``ada``; members ``ben`` and ``cleo``; viewer ``dev``), the workspace "Acme
Studio", two projects with full boards (one with a Review column and a workflow rule),
channels #general and #design with threads, mentions and reactions, a DM, a document and
an uploaded file. Run again, it only prints how to log in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from huddle.config import Settings

PASSWORD = "huddle-demo-password"  # noqa: S105 - the demo's published password
WORKSPACE = "Acme Studio"
USERS = (
    ("ada", "Ada Admin", "admin"),
    ("ben", "Ben Builder", "member"),
    ("cleo", "Cleo Designer", "member"),
    ("dev", "Dev Viewer", "viewer"),
)

WEBSITE_TASKS = (
    ("Pick the hosting provider", "done", "ben", "medium"),
    ("Write the landing page copy", "done", "cleo", "high"),
    ("Design the pricing page", "review", "cleo", "high"),
    ("Set up the CI pipeline", "in_progress", "ben", "urgent"),
    ("Accessibility audit", "in_progress", "cleo", "medium"),
    ("Add the newsletter signup", "todo", "ben", "low"),
    ("Translate the site to German", "todo", None, "low"),
    ("Load test the checkout", "todo", "ben", "high"),
)
APP_TASKS = (
    ("Offline mode for notes", "todo", "ben", "high"),
    ("Push notifications", "in_progress", "ben", "medium"),
    ("Dark theme", "done", "cleo", "low"),
    ("Crash on login with an expired token", "todo", "ben", "urgent"),
)


class DemoError(Exception):
    """A demo step the API refused (the message says which and why)."""


@dataclass
class Demo:
    http: httpx.AsyncClient
    tokens: dict[str, str]

    async def call(self, who: str | None, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        response = await self.http.request(method, path, headers=headers, **kwargs)
        if response.status_code >= 400:
            raise DemoError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None


async def _login(http: httpx.AsyncClient, username: str) -> str | None:
    response = await http.post("/api/auth/token", data={"username": username, "password": PASSWORD})
    return response.json()["access_token"] if response.status_code == 200 else None


async def seed(http: httpx.AsyncClient) -> bool:
    """Seed the demo through the API; False when it is there already."""
    if await _login(http, "ada") is not None:
        return False
    demo = Demo(http, {})
    ids: dict[str, str] = {}
    for username, name, _role in USERS:
        body = {
            "email": f"{username}@acme.example.com",
            "username": username,
            "password": PASSWORD,
            "full_name": name,
        }
        ids[username] = (await demo.call(None, "POST", "/api/auth/register", json=body))["id"]
        token = await _login(http, username)
        if token is None:
            raise DemoError(f"could not log in as {username}")
        demo.tokens[username] = token

    ws = await demo.call("ada", "POST", "/api/workspaces", json={"name": WORKSPACE})
    wid = ws["id"]
    for username, _name, role in USERS[1:]:
        await demo.call(
            "ada", "POST", f"/api/workspaces/{wid}/members", json={"user_id": ids[username]}
        )
        if role != "member":
            await demo.call(
                "ada",
                "PATCH",
                f"/api/workspaces/{wid}/members/{ids[username]}",
                json={"role": role},
            )

    client = await demo.call(
        "ada",
        "POST",
        f"/api/workspaces/{wid}/clients",
        json={"name": "Globex Corporation", "contact_emails": ["hank@globex.example"]},
    )
    website = await demo.call(
        "ada",
        "POST",
        f"/api/workspaces/{wid}/projects",
        json={
            "name": "Website relaunch",
            "description": "The new marketing site for Globex",
            "client_id": client["id"],
        },
    )
    app_project = await demo.call(
        "ada",
        "POST",
        f"/api/workspaces/{wid}/projects",
        json={"name": "Mobile app", "description": "iOS and Android app, version 2"},
    )
    await demo.call(
        "ada",
        "POST",
        f"/api/projects/{website['id']}/columns",
        json={"name": "Review", "key": "review", "position": 2},
    )
    for project, tasks in ((website, WEBSITE_TASKS), (app_project, APP_TASKS)):
        board = await demo.call("ada", "GET", f"/api/projects/{project['id']}/board")
        columns = {c["key"]: c["id"] for c in board["columns"]}
        for title, status, assignee, priority in tasks:
            await demo.call(
                "ben",
                "POST",
                f"/api/projects/{project['id']}/tasks",
                json={
                    "title": title,
                    "column_id": columns[status],
                    "assignee_id": ids[assignee] if assignee else None,
                    "priority": priority,
                },
            )
        if project is website:
            review_column = columns["review"]
    await demo.call(
        "ada",
        "PUT",
        f"/api/projects/{website['id']}/workflow",
        json={"wip_limits": [{"column_id": review_column, "limit": 3}]},
    )

    general = await demo.call(
        "ada", "POST", f"/api/workspaces/{wid}/channels", json={"name": "general"}
    )
    design = await demo.call(
        "cleo",
        "POST",
        f"/api/workspaces/{wid}/channels",
        json={"name": "design", "topic": "Mockups, reviews and type"},
    )

    async def say(who: str, channel: str, text: str, parent: str | None = None) -> str:
        body: dict[str, Any] = {"content": text}
        if parent:
            body["parent_id"] = parent
        return str(
            (await demo.call(who, "POST", f"/api/channels/{channel}/messages", json=body))["id"]
        )

    hello = await say("ada", general["id"], "Welcome to Huddle, everyone! 👋")
    await say("ben", general["id"], "Thanks @ada! The CI pipeline is my first stop.")
    for who, emoji in (("ben", "tada"), ("cleo", "wave")):
        await demo.call(who, "PUT", f"/api/messages/{hello}/reactions/{emoji}")
    mockups = await say("cleo", design["id"], "Pricing page mockups are up for review.")
    await say("ben", design["id"], "Love the cards. Can the toggle default to yearly?", mockups)
    await say("cleo", design["id"], "Good call @ben, updated.", mockups)
    await demo.call("ada", "PUT", f"/api/messages/{mockups}/reactions/eyes")
    dm = await demo.call(
        "ben", "POST", f"/api/workspaces/{wid}/dms", json={"user_ids": [ids["cleo"]]}
    )
    await say("ben", dm["id"], "Coffee after the standup?")

    await demo.call(
        "ada",
        "POST",
        f"/api/projects/{website['id']}/documents",
        json={
            "title": "Launch checklist",
            "content": (
                "# Launch checklist\n\n- [x] Hosting picked\n- [ ] Pricing page approved\n"
                "- [ ] Load test the checkout\n- [ ] Redirects from the old site\n"
            ),
        },
    )
    notes = (
        b"# Brand notes\n\nPrimary colour: #2F5BEA. Type: Inter for text, "
        b"Space Grotesk for headings. Never stretch the logo.\n"
    )
    await demo.call(
        "cleo",
        "POST",
        f"/api/projects/{website['id']}/files",
        files={"file": ("brand-notes.md", notes, "text/markdown")},
    )
    return True


async def run_demo(settings: Settings) -> bool:
    from huddle.app import create_app

    app = create_app(settings)
    failure: DemoError | None = None
    created = False
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 0))
        async with httpx.AsyncClient(transport=transport, base_url="http://demo") as http:
            try:
                created = await seed(http)
            except DemoError as exc:  # raised past the lifespan it would come out grouped
                failure = exc
        await app.state.dispatcher.flush()
    if failure is not None:
        raise failure
    return created


def instructions(base_url: str = "http://127.0.0.1:8000") -> str:
    people = "\n".join(f"  {u:<5} {role:<7} ({name})" for u, name, role in USERS)
    return f"""Demo workspace "{WORKSPACE}" — every user's password is {PASSWORD}
{people}

Start the server (huddle serve), then log in and call the API:
  curl -s -X POST {base_url}/api/auth/token -d username=ada -d password={PASSWORD}
  curl -s {base_url}/api/workspaces -H "Authorization: Bearer <access_token>"
API docs: {base_url}/docs — WebSocket: {base_url.replace("http", "ws", 1)}/ws"""
