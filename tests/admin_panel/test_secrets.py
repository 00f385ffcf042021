"""No secret is ever shown: not in any view's columns, not in any rendered page."""

from __future__ import annotations

import re

import httpx
from fastapi import FastAPI
from sqladmin import ModelView
from sqlalchemy import select

import huddle.registry  # noqa: F401
from huddle.admin_panel.redaction import EXPLICIT, hidden_keys
from huddle.auth.models import ApiToken, RefreshToken, User
from huddle.chat.models import Message
from huddle.core.models import Base
from huddle.documents.models import Document
from huddle.events.models import Webhook
from huddle.workspaces.models import Invitation
from tests.admin_panel.conftest import panel_login
from tests.world import add_user, add_webhooks, build_world

MESSAGE_MARKER = "classified-message-body-7731"
DOCUMENT_MARKER = "classified-document-body-4412"


def _views(app: FastAPI) -> list[ModelView]:
    return [view for view in app.state.admin_panel.views if isinstance(view, ModelView)]


def test_every_model_has_a_view_without_secret_columns(app: FastAPI) -> None:
    views = _views(app)
    assert {view.model for view in views} == {m.class_ for m in Base.registry.mappers}
    for view in views:
        hidden = hidden_keys(view._mapper)
        table = view._mapper.local_table.name
        hidden_explicitly = {column for t, column in EXPLICIT if t == table}
        assert hidden_explicitly <= hidden, view.identity
        shown = {
            *view._list_prop_names,
            *view._details_prop_names,
            *view._form_prop_names,
            *view._export_prop_names,
            *view._import_prop_names,
            *view._search_fields,
            *view._sort_fields,
        }
        assert not shown & hidden, (view.identity, shown & hidden)
        assert not (view.can_create or view.can_edit or view.can_delete), view.identity
        assert not (view.can_export or view.can_import), view.identity
    users = next(view for view in views if view.model is User)
    assert "hashed_password" in hidden_keys(users._mapper)
    tokens = next(view for view in views if view.model is ApiToken)
    assert "token_hash" in hidden_keys(tokens._mapper)


async def _secrets(app: FastAPI) -> list[str]:
    async with app.state.db.read_session() as session:
        values: list[str | None] = [
            *(await session.scalars(select(User.hashed_password))),
            *(await session.scalars(select(ApiToken.token_hash))),
            *(await session.scalars(select(RefreshToken.token_hash))),
            *(await session.scalars(select(Invitation.token_hash))),
            *(await session.scalars(select(Webhook.secret))),
        ]
    return [value for value in values if value]


async def test_no_page_shows_a_secret(app: FastAPI, client: httpx.AsyncClient) -> None:
    world = await build_world(client, app, chat=True)
    await add_webhooks(world)
    await world.ok(
        "member", "POST", "/api/channels/{CH}/messages", 201, json={"content": MESSAGE_MARKER}
    )
    await world.ok(
        "admin",
        "POST",
        "/api/projects/{P}/documents",
        201,
        json={"title": "Plan", "content": DOCUMENT_MARKER},
    )
    await world.ok("member", "POST", "/api/auth/api-tokens", 201, json={"name": "ci"})
    login = await client.post(
        "/api/auth/token", data={"username": "member", "password": "correct horse battery"}
    )
    assert login.status_code == 200
    await app.state.dispatcher.flush()
    secrets = await _secrets(app)
    kinds = len(secrets)
    assert kinds >= 10  # user hashes, an API token, refresh tokens, invitations, webhooks
    secrets += [MESSAGE_MARKER, DOCUMENT_MARKER]
    async with app.state.db.read_session() as session:
        assert await session.scalar(select(Message.id).where(Message.content == MESSAGE_MARKER))
        assert await session.scalar(select(Document.id))

    assert (await panel_login(client, "superuser")).status_code == 302
    pages = 0
    for view in _views(app):
        listing = await client.get(f"/admin/{view.identity}/list", params={"pageSize": 100})
        assert listing.status_code == 200, view.identity
        pages += 1
        _assert_clean(listing.text, secrets, view.identity)
        links = re.findall(rf'/admin/{view.identity}/details/([^"?]+)"', listing.text)
        for pk in list(dict.fromkeys(links))[:3]:
            details = await client.get(f"/admin/{view.identity}/details/{pk}")
            assert details.status_code == 200, (view.identity, pk)
            pages += 1
            _assert_clean(details.text, secrets, f"{view.identity} {pk}")
    assert pages > 60  # lists of every view and details of the populated ones


def _assert_clean(html: str, secrets: list[str], where: str) -> None:
    for secret in secrets:
        assert secret not in html, (where, secret[:12])


async def test_secrets_cannot_be_searched_or_sorted(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await add_user(app, "root", superuser=True)
    await panel_login(client, "root")
    [stored] = [s for s in await _secrets(app) if s.startswith("$argon2")]
    found = await client.get("/admin/user/list", params={"search": stored[:20]})
    assert found.status_code == 200
    assert "root@example.com" not in found.text
    assert "root@example.com" in (await client.get("/admin/user/list")).text
    for view, column in (("user", "hashed_password"), ("api-token", "token_hash")):
        response = await client.get(f"/admin/{view}/list", params={"sortBy": column})
        assert response.status_code == 400, view
