"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import text

from huddle.core.errors import ServiceUnavailable

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
    """Every configured dependency answers (database; Redis when configured)."""
    checks: dict[str, str] = {}
    failures: dict[str, str] = {}

    async def check_database() -> None:
        async with request.app.state.db.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    probes = {"database": check_database}
    redis = request.app.state.redis
    if redis is not None:

        async def check_redis() -> None:
            await redis.ping()

        probes["redis"] = check_redis

    for name, probe in probes.items():
        try:
            await asyncio.wait_for(probe(), _CHECK_TIMEOUT)
            checks[name] = "ok"
        except Exception as exc:  # any failure means "not ready", reported by name
            log.warning("readiness check %s failed: %r", name, exc)
            failures[name] = "unreachable"
    if failures:
        raise ServiceUnavailable(
            "Not ready: " + ", ".join(sorted(failures)), details={"checks": checks | failures}
        )
    return Readiness(status="ok", checks=checks)
