"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from contextlib import suppress
from functools import partial

import httpx
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from sqlalchemy import text

from huddle.core.errors import NotAuthenticated, ServiceUnavailable
from huddle.core.observability import render_metrics

router = APIRouter(tags=["health"])
log = logging.getLogger("huddle.health")
_CHECK_TIMEOUT = 3.0


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


@router.get("/health", response_model=Health)
async def health() -> Health:
    """The process is alive."""
    return Health(status="ok")


@router.get("/ready", response_model=Readiness)
async def ready(request: Request) -> Readiness:
    """Every configured dependency answers.

    The database, and Redis when configured, are required: without them the answer is
    503. Optional ones — the LLM provider, the Dapr sidecar, the SMTP server, when
    configured — are checked and reported, and a failing one makes the status
    ``degraded`` (still 200: the API works without them, so a load balancer should keep
    sending traffic)."""
    state = request.app.state
    settings = state.settings

    async def check_database() -> None:
        async with state.db.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    required: dict[str, Callable[[], Awaitable[None]]] = {"database": check_database}
    redis = state.redis
    if redis is not None:

        async def check_redis() -> None:
            await redis.ping()

        required["redis"] = check_redis
    optional: dict[str, Callable[[], Awaitable[None]]] = {}
    if settings.llm_base_url:
        base = settings.llm_base_url.rstrip("/")
        headers = (
            {"Authorization": f"Bearer {settings.llm_api_key}"} if settings.llm_api_key else {}
        )
        optional["llm"] = partial(_http_answers, f"{base}/models", headers)
    if settings.effective_event_bus == "dapr":
        url = settings.dapr_http_endpoint.rstrip("/") + "/v1.0/healthz/outbound"
        optional["dapr"] = partial(_http_answers, url, {})
    if settings.smtp_host:
        optional["smtp"] = partial(_tcp_answers, settings.smtp_host, settings.smtp_port)

    results = await asyncio.gather(
        *(_probe(name, probe) for name, probe in (required | optional).items())
    )
    checks = dict(zip(required | optional, results, strict=True))
    failed = sorted(name for name in required if checks[name] != "ok")
    if failed:
        raise ServiceUnavailable("Not ready: " + ", ".join(failed), details={"checks": checks})
    degraded = any(checks[name] != "ok" for name in optional)
    return Readiness(status="degraded" if degraded else "ok", checks=checks)


async def _probe(name: str, probe: Callable[[], Awaitable[None]]) -> str:
    try:
        await asyncio.wait_for(probe(), _CHECK_TIMEOUT)
    except Exception as exc:  # any failure means "not ready", reported by name
        log.warning("readiness check %s failed: %r", name, exc)
        return "unreachable"
    return "ok"


async def _http_answers(url: str, headers: dict[str, str]) -> None:
    """The service answers HTTP at ``url`` (a 5xx counts as down)."""
    async with httpx.AsyncClient(timeout=_CHECK_TIMEOUT) as client:
        response = await client.get(url, headers=headers)
    if response.status_code >= 500:
        raise RuntimeError(f"HTTP {response.status_code}")


async def _tcp_answers(host: str, port: int) -> None:
    _reader, writer = await asyncio.open_connection(host, port)
    writer.close()
    with suppress(Exception):
        await writer.wait_closed()


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics of this process (of every worker in multiprocess mode).
    Public unless ``HUDDLE_METRICS_TOKEN`` is set; then ``Authorization: Bearer <token>``."""
    token = request.app.state.settings.metrics_token
    if token:
        given = request.headers.get("authorization", "")
        if not secrets.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise NotAuthenticated("GET /metrics needs the metrics token")
    return Response(render_metrics(), media_type="text/plain; version=0.0.4; charset=utf-8")
