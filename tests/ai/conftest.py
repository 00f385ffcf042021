"""Apps whose assistant talks to a scripted OpenAI-compatible server over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from huddle.app import create_app
from huddle.config import Settings
from tests.ai.scripted_llm import ScriptedLLM
from tests.world import World, build_world


@pytest.fixture
async def llm() -> AsyncIterator[ScriptedLLM]:
    async with ScriptedLLM() as server:
        yield server


@pytest.fixture
def ai_settings(
    make_settings: Callable[..., Settings], llm: ScriptedLLM
) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "llm_base_url": llm.base_url,
            "llm_model": llm.model,
            "llm_api_key": "test-key",
            "llm_max_retries": 1,
        }
        values.update(overrides)
        return make_settings(**values)

    return build


@pytest.fixture
def ai_app(ai_settings: Callable[..., Settings]) -> FastAPI:
    return create_app(ai_settings())


@pytest.fixture
async def ai_world(ai_app: FastAPI, start_app: Callable[[FastAPI], Any]) -> World:
    client: httpx.AsyncClient = await start_app(ai_app)
    return await build_world(client, ai_app)
