"""Factories and assertions shared by the tests."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

_counter = itertools.count(1)
PASSWORD = "correct horse battery"


async def register(
    client: httpx.AsyncClient, username: str | None = None, password: str = PASSWORD, **extra: Any
) -> dict[str, Any]:
    username = username or f"user{next(_counter)}"
    body = {"email": f"{username}@example.com", "username": username, "password": password, **extra}
    response = await client.post("/api/auth/register", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def login(
    client: httpx.AsyncClient, username: str, password: str = PASSWORD
) -> dict[str, Any]:
    response = await client.post(
        "/api/auth/token", data={"username": username, "password": password}
    )
    assert response.status_code == 200, response.text
    return response.json()


async def user_with_token(
    client: httpx.AsyncClient, username: str | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Register and log in a user; return (user, Authorization headers)."""
    user = await register(client, username)
    tokens = await login(client, user["username"])
    return user, bearer(tokens["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is an error in Huddle's one shape with this status and code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) <= {"error", "code", "details"}, body
    assert isinstance(body["error"], str) and body["error"]
    assert body["code"] == code, body
    return body


def background(statement: str) -> bool:
    """A statement of the background jobs (event dispatcher, webhook sender, search
    indexer), which may run while a test counts a request's statements.

    Their tasks are named ``huddle-*``; statement events fire in the task that runs the
    statement (SQLAlchemy's asyncio drivers run it in that task's greenlet)."""
    task = asyncio.current_task()
    if task is not None and task.get_name().startswith("huddle-"):
        return True
    return "events" in statement or "webhook" in statement


async def wait_for(predicate: Callable[[], Awaitable[Any]], timeout: float = 15.0) -> Any:
    """The first truthy value ``predicate()`` returns, polling; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)
