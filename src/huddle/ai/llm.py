"""The LLM client: the OpenAI SDK against any OpenAI-compatible endpoint.

OpenAI itself, Ollama's ``/v1``, vLLM and llama.cpp's server all speak the same
chat-completions protocol, so one client serves them all (``HUDDLE_LLM_BASE_URL``,
``HUDDLE_LLM_API_KEY``, ``HUDDLE_LLM_MODEL``). The SDK retries 408/409/429/5xx and
connection errors with exponential backoff (honouring ``Retry-After``) up to
``HUDDLE_LLM_MAX_RETRIES`` times, each call bounded by ``HUDDLE_LLM_TIMEOUT``. Every
call's token usage is written to ``ai_usage``.

With no model configured, :meth:`LLM.require` raises 503 ``ai_unavailable`` saying what
to set; nothing else in Huddle needs an LLM.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import openai
from openai import AsyncOpenAI
from starlette.datastructures import State

from huddle.ai.models import AIUsage
from huddle.config import Settings
from huddle.core.db import unit_of_work
from huddle.core.errors import AppError, ServiceUnavailable

log = logging.getLogger("huddle.ai")

UNAVAILABLE = (
    "No language model is configured: set HUDDLE_LLM_MODEL and HUDDLE_LLM_BASE_URL (any "
    "OpenAI-compatible endpoint, e.g. http://localhost:11434/v1 for Ollama) or "
    "HUDDLE_LLM_API_KEY for OpenAI"
)


class AIUnavailable(ServiceUnavailable):
    code = "ai_unavailable"
    message = UNAVAILABLE


class ProviderError(AppError):
    """The model's server failed or could not be reached (after the retries)."""

    status_code, code, message = 502, "ai_provider_error", "The language model did not answer"


def provider_error(exc: Exception) -> ProviderError:
    """A clear error for a failed call, without echoing the provider's whole body."""
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError("The language model did not answer in time")
    if isinstance(exc, openai.APIConnectionError):
        return ProviderError("The language model's server could not be reached")
    if isinstance(exc, openai.APIStatusError):
        return ProviderError(
            f"The language model's server answered {exc.status_code}",
            details={"status": exc.status_code},
        )
    return ProviderError(f"The language model failed: {type(exc).__name__}")


def provider_name(settings: Settings) -> str:
    """What serves the model, as far as the URL tells."""
    if not settings.llm_base_url:
        return "openai" if settings.llm_api_key else "none"
    parts = urlsplit(settings.llm_base_url)
    host = (parts.hostname or "").lower()
    if host.endswith("openai.com"):
        return "openai"
    if parts.port == 11434 or "ollama" in host:
        return "ollama"
    return "openai-compatible"


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


class LLM:
    """The process's LLM client (``app.state.llm``)."""

    def __init__(self, settings: Settings, state: State | None = None) -> None:
        self.settings = settings
        self.state = state
        self.client: AsyncOpenAI | None = None
        if settings.llm_configured:
            self.client = AsyncOpenAI(
                base_url=settings.llm_base_url,
                api_key=settings.llm_api_key or "not-needed",
                timeout=settings.llm_timeout,
                max_retries=settings.llm_max_retries,
            )

    @property
    def model(self) -> str:
        return self.settings.llm_model or ""

    def require(self) -> AsyncOpenAI:
        if self.client is None:
            raise AIUnavailable()
        return self.client

    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        purpose: str,
        user_id: uuid.UUID | None,
        conversation_id: uuid.UUID | None = None,
        max_tokens: int | None = None,
    ) -> str:
        """One chat completion without tools; its usage is recorded."""
        client = self.require()
        try:
            response = await client.chat.completions.create(
                model=self.model,
                messages=cast(Any, messages),
                temperature=0,
                # A small model can ramble until its context is full: bound every answer.
                max_tokens=max_tokens or self.settings.ai_max_output_tokens,
            )
        except openai.OpenAIError as exc:
            log.warning("LLM call for %s failed: %r", purpose, exc)
            raise provider_error(exc) from exc
        usage = response.usage
        await self.record_usage(
            user_id,
            conversation_id,
            purpose,
            [Usage(usage.prompt_tokens, usage.completion_tokens)] if usage else [Usage()],
        )
        if not response.choices:
            raise ProviderError("The language model answered without a choice")
        return (response.choices[0].message.content or "").strip()

    async def record_usage(
        self,
        user_id: uuid.UUID | None,
        conversation_id: uuid.UUID | None,
        purpose: str,
        calls: list[Usage],
    ) -> None:
        """One ``ai_usage`` row per model call."""
        if self.state is None or not calls:
            return
        async with unit_of_work(self.state, write=True) as session:
            for call in calls:
                session.add(
                    AIUsage(
                        user_id=user_id,
                        conversation_id=conversation_id,
                        purpose=purpose,
                        model=self.model,
                        input_tokens=call.input_tokens,
                        output_tokens=call.output_tokens,
                    )
                )

    async def health(self) -> dict[str, Any]:
        """``{status, provider, model, reachable}``: ``reachable`` asks the server for its
        models (one quick call, no retries)."""
        provider = provider_name(self.settings)
        if self.client is None:
            return {
                "status": "unconfigured",
                "provider": provider,
                "model": self.settings.llm_model,
                "reachable": False,
                "detail": UNAVAILABLE,
            }
        try:
            await self.client.with_options(timeout=5.0, max_retries=0).models.list()
        except openai.OpenAIError as exc:
            return {
                "status": "unreachable",
                "provider": provider,
                "model": self.model,
                "reachable": False,
                "detail": provider_error(exc).message,
            }
        return {"status": "ok", "provider": provider, "model": self.model, "reachable": True}

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.close()
