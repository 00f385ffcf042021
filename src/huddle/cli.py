"""The ``huddle`` command: serve, worker, migrate, vacuum, demo, createsuperuser, license,
encryption, retention."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from pydantic import ValidationError

from huddle.config import Settings
from huddle.encryption.cli import add_encryption_commands, key_problem
from huddle.licensing.cli import add_license_commands
from huddle.retention.cli import add_retention_commands


def _fail(message: str) -> int:
    print(f"huddle: {message}", file=sys.stderr)
    return 2


def _load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise SystemExit(_fail(f"invalid settings:\n{exc}")) from exc


def cmd_migrate(_args: argparse.Namespace) -> int:
    from huddle.core.migrate import upgrade

    settings = _load_settings()
    upgrade(settings.database_url)
    print("huddle: database is up to date")
    return 0


def _schema_problem(settings: Settings) -> str | None:
    """Bring SQLite up to date; on PostgreSQL, say why not to start if it is behind."""
    from huddle.core.migrate import pending, upgrade

    if settings.is_sqlite:
        upgrade(settings.database_url)
        return key_problem(settings)
    current, head = asyncio.run(pending(settings))
    if current != head:
        return (
            f"the database is at revision {current or '(empty)'}, the code needs {head}: "
            "run `huddle migrate` first"
        )
    return key_problem(settings)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = _load_settings()
    if args.workers > 1 and not settings.redis_url:
        return _fail(
            "--workers > 1 needs HUDDLE_REDIS_URL: login rate limits and other shared state "
            "live in process memory without Redis, and several workers would each keep "
            "their own. Set HUDDLE_REDIS_URL or run one worker."
        )
    try:
        settings.signing_key  # noqa: B018 - create the generated key once, before forking
    except ValueError as exc:
        return _fail(str(exc))
    problem = _schema_problem(settings)
    if problem:
        return _fail(problem)
    uvicorn.run(
        "huddle.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=settings.log_level.lower(),
        # Client addresses (rate limits, logs) come from X-Forwarded-For only when the
        # connection is from a proxy named in HUDDLE_TRUSTED_PROXIES.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=",".join(settings.trusted_proxies) or None,
        # WebSocket messages are refused above this before they are parsed (the gateway
        # closes frames over HUDDLE_WS_MAX_FRAME_KB with 1009 itself).
        ws_max_size=settings.ws_max_frame_kb * 1024 + 1024,
        # Compression is per socket (each keeps its own deflate state), so with it on
        # every event is compressed once per subscriber: off unless asked for.
        ws_per_message_deflate=settings.ws_compression,
        # Huddle writes its own access line (huddle.access: route, user, database time).
        access_log=not settings.access_log,
    )
    return 0


async def _create_superuser(settings: Settings, email: str, username: str, password: str) -> str:
    from huddle.auth import service
    from huddle.auth.schemas import UserCreate
    from huddle.core.db import Database
    from huddle.core.passwords import PasswordHasher
    from huddle.core.ratelimit import MemoryRateLimiter

    data = UserCreate(email=email, username=username, password=password)
    db = Database(settings)
    hasher = PasswordHasher(settings)
    runtime = service.AuthRuntime(
        settings=settings, hasher=hasher, limiter=MemoryRateLimiter(), read_session=db.read_session
    )
    try:
        async with db.write_session() as session:
            user = await service.register(
                session, runtime, data, client_address="cli", is_superuser=True
            )
            await session.commit()
            return user.username
    finally:
        hasher.close()
        await db.dispose()


def _read_password(args: argparse.Namespace) -> str:
    if args.password is not None:
        return str(args.password)
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password (again): ") != first:
        raise SystemExit(_fail("passwords do not match"))
    return first


def cmd_createsuperuser(args: argparse.Namespace) -> int:
    from huddle.core.errors import AppError
    from huddle.core.migrate import upgrade

    settings = _load_settings()
    password = _read_password(args)
    if settings.is_sqlite:
        upgrade(settings.database_url)
    try:
        username = asyncio.run(_create_superuser(settings, args.email, args.username, password))
    except ValidationError as exc:
        problems = "; ".join(f"{e['loc'][-1]}: {e['msg']}" for e in exc.errors())
        return _fail(problems)
    except AppError as exc:
        return _fail(exc.message)
    print(f"huddle: superuser {username} created")
    return 0


async def _run_worker(settings: Settings) -> None:
    import logging
    import signal

    from huddle.core.db import Database
    from huddle.core.logging import configure_logging
    from huddle.events.runtime import build_event_runtime
    from huddle.retention.runner import start_retention

    configure_logging(settings.log_level, settings.log_format)
    log = logging.getLogger("huddle.worker")
    db = Database(settings)
    runtime = build_event_runtime(settings, db, run_workers=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runtime.start()
    retention = start_retention(db, settings)  # None with HUDDLE_RETENTION_JOB=false
    log.info(
        "worker running: event dispatcher (bus: %s), webhook sender%s",
        settings.effective_event_bus,
        ", retention job" if retention else "",
    )
    try:
        await stop.wait()
    finally:
        log.info("worker stopping")
        if retention is not None:
            await retention.stop()
        await runtime.stop()
        await db.dispose()


def cmd_worker(_args: argparse.Namespace) -> int:
    settings = _load_settings()
    if not settings.redis_url:
        return _fail(
            "`huddle worker` needs HUDDLE_REDIS_URL: the events it publishes reach the API "
            "processes' WebSocket clients through Redis. On one machine without Redis the "
            "API process dispatches events itself (HUDDLE_EMBEDDED_WORKER, the default)."
        )
    problem = _schema_problem(settings)
    if problem:
        return _fail(problem)
    asyncio.run(_run_worker(settings))
    return 0


def cmd_demo(_args: argparse.Namespace) -> int:
    from huddle.demo import DemoError, instructions, run_demo

    settings = _load_settings()
    problem = _schema_problem(settings)
    if problem:
        return _fail(problem)
    try:
        created = asyncio.run(run_demo(settings))
    except DemoError as exc:
        return _fail(f"the demo could not be seeded: {exc}")
    print("huddle: demo workspace created" if created else "huddle: the demo is already here")
    print(instructions())
    return 0


def cmd_vacuum(_args: argparse.Namespace) -> int:
    from huddle.search.maintenance import vacuum

    asyncio.run(vacuum(_load_settings()))
    print("huddle: database vacuumed, search indexes rebuilt")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="huddle", description="Huddle collaboration server")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the API server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser(
        "worker", help="run the event dispatcher and webhook sender without the API"
    )
    worker.set_defaults(func=cmd_worker)

    migrate = sub.add_parser("migrate", help="apply pending database migrations")
    migrate.set_defaults(func=cmd_migrate)

    vac = sub.add_parser(
        "vacuum", help="compact the database (SQLite: then rebuild the search indexes)"
    )
    vac.set_defaults(func=cmd_vacuum)

    demo = sub.add_parser(
        "demo", help="seed a demo workspace (users, boards, chat, a document) and say how to log in"
    )
    demo.set_defaults(func=cmd_demo)

    su = sub.add_parser("createsuperuser", help="create a site superuser")
    su.add_argument("--email", required=True)
    su.add_argument("--username", required=True)
    su.add_argument(
        "--password", help="the password (else read from stdin, or prompted on a terminal)"
    )
    su.set_defaults(func=cmd_createsuperuser)

    add_license_commands(sub)
    add_encryption_commands(sub, _load_settings)
    add_retention_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.func(args))
