"""An app with the admin panel mounted, and a client for it over HTTPS (the session
cookie is Secure by default, and httpx only sends it back over HTTPS)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from huddle.admin_panel import mount_admin_panel
from huddle.app import create_app
from huddle.config import Settings
from tests.helpers import PASSWORD


def with_panel(settings: Settings, **options: Any) -> FastAPI:
    """``create_app`` with the panel (mounted here unless the app factory already did)."""
    app = create_app(settings)
    if not hasattr(app.state, "admin_panel"):
        mount_admin_panel(app, settings, **options)
    return app


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return with_panel(settings)


@pytest.fixture
async def client(app: FastAPI, start_app: Callable[[FastAPI], Any]) -> httpx.AsyncClient:
    client: httpx.AsyncClient = await start_app(app)
    client.base_url = httpx.URL("https://testserver")
    return client


async def panel_login(
    client: httpx.AsyncClient, username: str, password: str = PASSWORD
) -> httpx.Response:
    return await client.post("/admin/login", data={"username": username, "password": password})


def set_cookie(response: httpx.Response) -> str:
    return "\n".join(response.headers.get_list("set-cookie"))


def rows_of(html: str) -> str:
    """The list table's body (search results), without the page chrome."""
    match = re.search(r"<tbody>(.*?)</tbody>", html, re.S)
    return match.group(1) if match else ""
