"""Task and board latency at 1,000 and 100,000 tasks, on SQLite and PostgreSQL.

Seeds one project (three columns, tasks spread evenly, a tenth assigned to the
measuring user), then times requests through the real ASGI app in this process:
create, move (to a random spot below a random card), the first list page, the board
with ~500 visible cards, and "my tasks". Prints a Markdown table; with --write it also
rewrites the tasks section of bench/RESULTS.md.

    .venv/bin/python bench/tasks_bench.py [--sizes 1000 100000] [--rounds 200]
        [--postgres postgresql://postgres@127.0.0.1/test] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
from asgi_lifespan import LifespanManager
from results import write_section
from sqlalchemy import insert, update
from sqlalchemy.engine import make_url

from huddle.app import create_app
from huddle.auth.models import User
from huddle.config import Settings
from huddle.core.ids import new_id
from huddle.core.migrate import upgrade
from huddle.core.time import utcnow
from huddle.core.tokens import encode_access_token
from huddle.tasks import ranking
from huddle.tasks.models import BoardColumn, Task

SECRET = "bench-secret-" + "x" * 40
OPERATIONS = ("create", "move", "list page", "board (~500 cards)", "my tasks")


async def seed(app, size: int) -> dict:
    db = app.state.db
    async with db.write_session() as session:
        user = User(email="bench@example.com", username="bench", hashed_password=None)
        session.add(user)
        await session.commit()
    headers = {"Authorization": f"Bearer {encode_access_token(user.id, SECRET, utcnow(), 3600)}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://bench", headers=headers
    ) as http:
        ws = (await http.post("/api/workspaces", json={"name": "Bench"})).json()
        project = (
            await http.post(f"/api/workspaces/{ws['id']}/projects", json={"name": "Big"})
        ).json()
        columns = (await http.get(f"/api/projects/{project['id']}/columns")).json()
    per_column = size // len(columns)
    now = utcnow()
    async with db.write_session() as session:
        for column in columns:
            ranks = ranking.after(None, per_column)
            rows = [
                {
                    "id": new_id(),
                    "project_id": uuid.UUID(project["id"]),
                    "column_id": uuid.UUID(column["id"]),
                    "title": f"Task {column['key']} {n}",
                    "description": "",
                    "priority": "none",
                    "assignee_id": user.id if n % 10 == 0 else None,
                    "creator_id": user.id,
                    "position": rank,
                    "version": 1,
                    "created_at": now,
                    "updated_at": now,
                }
                for n, rank in enumerate(ranks)
            ]
            for start in range(0, len(rows), 5000):
                await session.execute(insert(Task), rows[start : start + 5000])
            await session.execute(
                update(BoardColumn)
                .where(BoardColumn.id == uuid.UUID(column["id"]))
                .values(task_count=len(rows))
            )
        await session.commit()
    if db.engine.dialect.name == "postgresql":
        async with db.engine.connect() as conn:
            await conn.exec_driver_sql("ANALYZE tasks")
            await conn.commit()
    return {"headers": headers, "project": project, "columns": columns}


async def measure(app, ctx: dict, rounds: int) -> dict[str, list[float]]:
    project_id = ctx["project"]["id"]
    columns = ctx["columns"]
    timings: dict[str, list[float]] = {op: [] for op in OPERATIONS}
    rng = random.Random(7)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://bench", headers=ctx["headers"]
    ) as http:

        async def timed(op: str, method: str, url: str, **kwargs) -> httpx.Response:
            start = time.perf_counter()
            response = await http.request(method, url, **kwargs)
            timings[op].append((time.perf_counter() - start) * 1000)
            assert response.status_code < 300, (op, response.status_code, response.text)
            return response

        first_page = (
            await http.get(f"/api/projects/{project_id}/tasks", params={"limit": 50})
        ).json()
        anchors = [t["id"] for t in first_page["items"]]
        created: list[str] = []
        for _ in range(5):  # warm-up
            await http.get(f"/api/projects/{project_id}/board", params={"per_column": 167})
        for n in range(rounds):
            response = await timed(
                "create", "POST", f"/api/projects/{project_id}/tasks", json={"title": f"new {n}"}
            )
            created.append(response.json()["id"])
            column = columns[n % len(columns)]
            body = {"column_id": column["id"]}
            if column["id"] == columns[0]["id"]:
                body["after_id"] = rng.choice(anchors)
            await timed("move", "POST", f"/api/tasks/{rng.choice(created)}/move", json=body)
            await timed(
                "list page", "GET", f"/api/projects/{project_id}/tasks", params={"limit": 50}
            )
            if n % 4 == 0:
                await timed(
                    "board (~500 cards)",
                    "GET",
                    f"/api/projects/{project_id}/board",
                    params={"per_column": 167},
                )
            await timed("my tasks", "GET", "/api/me/tasks", params={"limit": 50})
    return timings


async def run_one(
    database_url: str, size: int, rounds: int, data_dir: str
) -> dict[str, tuple[float, float]]:
    settings = Settings(
        _env_file=None,
        database_url=database_url,
        secret_key=SECRET,
        data_dir=Path(data_dir),
        log_level="WARNING",
        event_poll_interval=0.5,
    )
    app = create_app(settings)
    async with LifespanManager(app):
        ctx = await seed(app, size)
        timings = await measure(app, ctx, rounds)
    return {
        op: (statistics.median(values), statistics.quantiles(values, n=20)[-1])
        for op, values in timings.items()
    }


async def _pg_admin(url: str, statement: str) -> None:
    parsed = make_url(url)
    conn = await asyncpg.connect(
        user=parsed.username,
        password=parsed.password,
        host=parsed.host,
        port=parsed.port or 5432,
        database=parsed.database or "postgres",
    )
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def fresh_database(kind: str, pg_url: str | None, tmp: str) -> tuple[str, callable]:
    if kind == "sqlite":
        path = Path(tmp) / f"bench-{uuid.uuid4().hex[:8]}.db"
        url = f"sqlite+aiosqlite:///{path}"
        upgrade(url)
        return url, lambda: None
    name = f"huddle_bench_{uuid.uuid4().hex[:8]}"
    asyncio.run(_pg_admin(pg_url, f'CREATE DATABASE "{name}"'))
    url = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    return url, lambda: asyncio.run(
        _pg_admin(pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    )


def machine() -> str:
    mem = ""
    try:
        with open("/proc/meminfo") as handle:
            kb = int(handle.readline().split()[1])
            mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except OSError:
        pass
    python = platform.python_version()
    return (
        f"{platform.machine()}, {os.cpu_count()} cores{mem}, Python {python}, {platform.system()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--postgres", default=os.environ.get("HUDDLE_TEST_DATABASE_URL"))
    parser.add_argument(
        "--write", action="store_true", help="rewrite the tasks section of bench/RESULTS.md"
    )
    args = parser.parse_args()

    kinds = ["sqlite"] + (["postgresql"] if args.postgres else [])
    results: dict[tuple[str, int], dict[str, tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            for size in args.sizes:
                url, cleanup = fresh_database(kind, args.postgres, tmp)
                try:
                    print(f"{kind} {size}: seeding and measuring...", file=sys.stderr)
                    results[(kind, size)] = asyncio.run(run_one(url, size, args.rounds, tmp))
                finally:
                    cleanup()

    small, large = min(args.sizes), max(args.sizes)
    lines = [
        "## Tasks and board (`bench/tasks_bench.py`)",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}.",
        "",
        "Command: `.venv/bin/python bench/tasks_bench.py --sizes "
        + " ".join(map(str, args.sizes))
        + f" --rounds {args.rounds}"
        + (" --postgres postgresql://postgres@127.0.0.1/test" if args.postgres else "")
        + " --write`",
        "",
        "In-process requests through the ASGI app (no network), one client, median and p95 in ms.",
        f"Goal: list page and move at {large:,} tasks within 2x of {small:,}.",
        "",
        "| database | operation | "
        + " | ".join(f"{s:,} tasks (median / p95)" for s in args.sizes)
        + f" | ratio {large:,}/{small:,} | goal |",
        "|---|---|" + "---|" * len(args.sizes) + "---|---|",
    ]
    verdicts = []
    for kind in kinds:
        for op in OPERATIONS:
            cells = [
                f"{results[(kind, s)][op][0]:.1f} / {results[(kind, s)][op][1]:.1f}"
                for s in args.sizes
            ]
            ratio = results[(kind, large)][op][0] / results[(kind, small)][op][0]
            goal = ""
            if op in ("list page", "move"):
                goal = "met" if ratio <= 2 else "**missed**"
                verdicts.append(ratio <= 2)
            lines.append(f"| {kind} | {op} | " + " | ".join(cells) + f" | {ratio:.2f} | {goal} |")
    lines.append("")
    table = "\n".join(lines)
    print(table)
    if args.write:
        write_section("## Tasks and board", table)
    sys.exit(0 if all(verdicts) else 1)


if __name__ == "__main__":
    main()
