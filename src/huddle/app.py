"""The application factory: ``create_app(settings)``."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.datastructures import State
from starlette.routing import Route

from huddle import __version__
from huddle.admin.routes import router as admin_router
from huddle.admin_panel import mount_admin_panel
from huddle.ai.llm import LLM
from huddle.ai.routes import prompt_router
from huddle.ai.routes import router as ai_router
from huddle.ai.service import AIRuntime
from huddle.ai.usage_routes import router as ai_usage_router
from huddle.auth.deps import user_outside_transaction
from huddle.auth.external import ExternalTokenVerifier
from huddle.auth.routes import router as auth_router
from huddle.auth.service import AuthRuntime
from huddle.automation.routes import router as automations_router
from huddle.chat.messages import ChatRuntime
from huddle.chat.routes import router as chat_router
from huddle.clients.routes import router as clients_router
from huddle.config import Settings
from huddle.core.background import BackgroundRunner
from huddle.core.bodylimit import BodyLimitMiddleware
from huddle.core.cache import MemoryScopedCache, RedisScopedCache
from huddle.core.cors import ErrorShapedCORSMiddleware
from huddle.core.db import Database
from huddle.core.errors import AppError, install_error_handlers
from huddle.core.idempotency import IdempotencyMiddleware
from huddle.core.logging import configure_logging
from huddle.core.mail import create_mail_backend
from huddle.core.middleware import RequestContextMiddleware
from huddle.core.observability import init_error_reports
from huddle.core.openapi import install_openapi
from huddle.core.passwords import PasswordHasher
from huddle.core.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from huddle.core.redis import create_redis
from huddle.documents.routes import router as document_router
from huddle.documents.routes import upload_body_limit
from huddle.documents.storage import FileStore
from huddle.encryption.keycheck import KeyGate
from huddle.events.dapr_routes import router as dapr_router
from huddle.events.routes import router as event_router
from huddle.events.runtime import build_event_runtime, embedder_for, remote_wake
from huddle.events.webhook_routes import router as webhook_router
from huddle.health import router as health_router
from huddle.licensing.routes import router as license_router
from huddle.licensing.service import load_license
from huddle.mcp.server import MCPEndpoint
from huddle.projects.routes import router as project_router
from huddle.realtime.fanout import Fanout, LocalFanout, RedisFanout
from huddle.realtime.gateway import router as gateway_router
from huddle.realtime.hub import Hub
from huddle.realtime.state import (
    Calls,
    MemoryCalls,
    MemoryPresence,
    Presence,
    RedisCalls,
    RedisPresence,
)
from huddle.realtime.turn import router as turn_router
from huddle.retention.runner import start_retention
from huddle.search.routes import SemanticRuntime
from huddle.search.routes import ai_router as ai_search_router
from huddle.search.routes import router as search_router
from huddle.search.vectors import VectorIndex
from huddle.tasks.routes import router as task_router
from huddle.workspaces.invitations import Mailer
from huddle.workspaces.routes import router as workspace_router

log = logging.getLogger("huddle")


async def _bearer_user_id(state: State, token: str) -> uuid.UUID | None:
    """The active user behind a Bearer token, or None: how Idempotency-Keys are scoped
    (resolved as routes do; the route itself answers 401 for a bad token)."""
    try:
        user = await user_outside_transaction(state, token)
    except AppError:
        return None
    return user.id


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI app. Without arguments, settings come from ``HUDDLE_*`` variables."""
    settings = settings or Settings()
    configure_logging(settings.log_level, settings.log_format)
    init_error_reports(settings.sentry_dsn, settings.sentry_environment, __version__)
    settings.signing_key  # noqa: B018 - fail at startup, not on the first request

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings)
        # Refuses to start (a clear error) when the keys cannot open the stored content.
        key_gate = KeyGate(db, db.keyring)
        try:
            await key_gate.start()
        except BaseException:
            await db.dispose()
            raise
        app.state.key_gate = key_gate
        redis = create_redis(settings.redis_url) if settings.redis_url else None
        limiter: RateLimiter = (
            RedisRateLimiter(redis, settings.redis_key_prefix) if redis else MemoryRateLimiter()
        )
        hasher = PasswordHasher(settings)
        verifier = ExternalTokenVerifier(settings) if settings.external_jwt_enabled else None
        runner = BackgroundRunner()
        vectors = VectorIndex()
        events = build_event_runtime(
            settings, db, run_workers=settings.embedded_worker, vectors=vectors
        )
        ttl = settings.ws_heartbeat * 3
        fanout: Fanout
        presence: Presence
        calls: Calls
        if redis is not None and settings.redis_url:
            fanout = RedisFanout(settings.redis_url, settings.redis_key_prefix)
            presence = RedisPresence(redis, settings.redis_key_prefix, ttl)
            calls = RedisCalls(redis, settings.redis_key_prefix, ttl)
        else:
            fanout = LocalFanout(events.memory_bus)
            presence, calls = MemoryPresence(), MemoryCalls()
        dispatcher = events.dispatcher
        app.state.db = db
        app.state.redis = redis
        app.state.auth = AuthRuntime(
            settings=settings, hasher=hasher, limiter=limiter, read_session=db.read_session
        )
        app.state.external_verifier = verifier
        app.state.role_cache = (
            RedisScopedCache(redis, settings.redis_key_prefix, settings.role_cache_ttl)
            if redis
            else MemoryScopedCache(settings.role_cache_ttl)
        )
        app.state.chat = ChatRuntime(
            cache=app.state.role_cache, limiter=limiter, message_rate=settings.message_rate
        )
        app.state.background = runner
        app.state.semantic = SemanticRuntime(embedder_for(settings), vectors)
        app.state.ai = AIRuntime(llm=LLM(settings, app.state), limiter=limiter, settings=settings)
        app.state.mailer = Mailer(create_mail_backend(settings), runner, settings)
        app.state.events = events
        app.state.bus = events.memory_bus
        app.state.dispatcher = dispatcher
        app.state.wake_dispatcher = (
            dispatcher.wake
            if settings.embedded_worker or redis is None
            else remote_wake(redis, settings.redis_key_prefix)
        )
        hub = Hub(app.state, fanout, presence, calls)
        app.state.hub = hub
        await hub.start()
        await fanout.start(hub)
        events.start()
        app.state.retention = start_retention(db, settings, app.state.file_store)
        try:
            async with mcp.run():
                yield
        finally:
            if app.state.retention is not None:
                await app.state.retention.stop()
            await key_gate.stop()
            await events.stop()
            await fanout.stop()
            await app.state.role_cache.aclose()
            await app.state.semantic.embedder.aclose()
            await runner.drain()  # streaming AI turns still need their client
            await app.state.ai.llm.aclose()
            if verifier is not None:
                await verifier.aclose()
            hasher.close()
            if redis is not None:
                await redis.aclose()
            await db.dispose()

    app = FastAPIOffline(
        title="Huddle",
        version=__version__,
        description="Self-hosted backend for team collaboration.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    # Verified once: a bad key is logged and means open-source mode, never a failed start.
    app.state.license = load_license(settings.license_key)
    mcp = MCPEndpoint(app.state)
    app.state.file_store = FileStore(settings.upload_path)
    install_error_handlers(app)
    install_openapi(app)
    # Inside CORS and RequestContextMiddleware: replays get CORS headers, a request id
    # and, when the app raises, the 500 in the error shape.
    app.add_middleware(IdempotencyMiddleware, identify=_bearer_user_id)
    # Outside idempotency (which buffers bodies to hash them), inside CORS (a 413 gets
    # CORS headers).
    app.add_middleware(
        BodyLimitMiddleware,
        limit=settings.max_body_kb * 1024,
        limit_for=upload_body_limit(settings),
    )
    if settings.cors_origins:
        app.add_middleware(
            ErrorShapedCORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "ETag", "Retry-After", "Idempotent-Replayed"],
        )
    app.add_middleware(RequestContextMiddleware, access_log=settings.access_log)
    app.include_router(health_router)
    app.include_router(auth_router)
    app.include_router(workspace_router)
    app.include_router(project_router)
    app.include_router(task_router)
    app.include_router(chat_router)
    app.include_router(search_router)
    app.include_router(document_router)
    app.include_router(ai_search_router)
    app.include_router(ai_router)
    app.include_router(prompt_router)
    app.include_router(ai_usage_router)
    app.include_router(event_router)
    app.include_router(webhook_router)
    app.include_router(dapr_router)
    app.include_router(admin_router)
    app.include_router(license_router)
    app.include_router(clients_router)
    app.include_router(automations_router)
    app.include_router(turn_router)
    app.include_router(gateway_router)
    # The MCP server, with and without the trailing slash (no redirect for clients).
    for path in ("/mcp", "/mcp/"):
        app.router.routes.append(Route(path, mcp, methods=["GET", "POST", "DELETE"]))
    mount_admin_panel(app, settings)
    return app
