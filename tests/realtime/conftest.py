"""Fixtures for gateway tests: a live server (``live``) and a populated world on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from huddle.app import create_app
from huddle.config import Settings
from tests.realtime.wsclient import Client, Live, serve, token_of
from tests.world import World, build_world


@pytest.fixture
def live_settings() -> dict[str, Any]:
    """Setting overrides for the live server (tests change this dict before ``live``)."""
    return {}


@pytest.fixture
async def live(
    make_settings: Callable[..., Settings], live_settings: dict[str, Any]
) -> AsyncIterator[Live]:
    server = await serve(create_app(make_settings(**live_settings)))
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def world(live: Live) -> World:
    built = await build_world(live.http, live.app, chat=True)
    await live.app.state.dispatcher.flush()  # sockets start after the world's events
    return built


@pytest.fixture
async def connect(live: Live, world: World) -> AsyncIterator[Callable[..., Any]]:
    """``await connect("member")``: an authenticated socket as that role."""
    opened: list[Client] = []

    async def open_as(role: str) -> Client:
        client = await Client.connect(live.ws_url, token_of(world.headers[role]))
        opened.append(client)
        return client

    yield open_as
    for client in opened:
        await client.close()
