"""Requests that change something must come from the panel's own pages."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI

from huddle.auth.models import User
from tests.admin_panel.conftest import panel_login
from tests.world import add_user

CROSS_SITE = [
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    {"Referer": "https://evil.example/page"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site", "Origin": "https://testserver"},
]


@pytest.mark.parametrize("headers", CROSS_SITE)
async def test_cross_origin_login_post_is_refused(
    app: FastAPI, client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    await add_user(app, "root", superuser=True)
    response = await client.post(
        "/admin/login",
        data={"username": "root", "password": "correct horse battery"},
        headers=headers,
    )
    assert response.status_code == 403
    assert "set-cookie" not in response.headers
    assert (await client.get("/admin/")).status_code == 302


async def test_cross_origin_action_is_refused(app: FastAPI, client: httpx.AsyncClient) -> None:
    await add_user(app, "root", superuser=True)
    target, _ = await add_user(app, "target")
    await panel_login(client, "root")
    for headers in CROSS_SITE:
        response = await client.get(
            "/admin/user/action/deactivate", params={"pks": target["id"]}, headers=headers
        )
        assert response.status_code == 403, headers
    async with app.state.db.read_session() as session:
        user = await session.get(User, uuid.UUID(target["id"]))
        assert user is not None and user.is_active


async def test_same_origin_requests_pass(app: FastAPI, client: httpx.AsyncClient) -> None:
    await add_user(app, "root", superuser=True)
    response = await client.post(
        "/admin/login",
        data={"username": "root", "password": "correct horse battery"},
        headers={"Origin": "https://testserver", "Sec-Fetch-Site": "same-origin"},
    )
    assert response.status_code == 302
    page = await client.get("/admin/user/list", headers={"Referer": "https://testserver/admin/"})
    assert page.status_code == 200
    assert page.headers["referrer-policy"] == "same-origin"
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-frame-options"] == "DENY"  # the app's headers still apply
