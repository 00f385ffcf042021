"""The embedded PostgreSQL 18 + pgvector server used by vector-search tests.

Skips with the reason when the server cannot run here, unless
``HUDDLE_TEST_REQUIRE_SERVICES`` names ``pgvector``: then it fails.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from pgvector import Vector
from pgvector.asyncpg import register_vector
from pgvector.sqlalchemy import Vector as VectorType
from sqlalchemy import Column, Integer, MetaData, Table, select
from sqlalchemy.ext.asyncio import create_async_engine

from tests.pgvector_server import (
    PgvectorServer,
    PgvectorServerError,
    _alive,
    _postmaster_pid,
    start_pgvector_server,
)


@pytest.fixture
async def conn(pgvector_server: PgvectorServer) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(pgvector_server.url)
    try:
        await connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
        await register_vector(connection)
        yield connection
    finally:
        await connection.close()


async def test_server_is_postgres_18_with_pgvector(conn: asyncpg.Connection) -> None:
    assert (await conn.fetchval("SHOW server_version")).startswith("18.")
    version = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    assert tuple(int(part) for part in version.split(".")[:2]) >= (0, 8)
    assert await conn.fetchval("SELECT inet_server_addr()::text") == "127.0.0.1/32"


async def test_hnsw_cosine_search_orders_by_distance(conn: asyncpg.Connection) -> None:
    await conn.execute("DROP TABLE IF EXISTS items")
    await conn.execute("CREATE TABLE items (id int PRIMARY KEY, embedding vector(3) NOT NULL)")
    await conn.execute(
        "CREATE INDEX items_embedding ON items USING hnsw (embedding vector_cosine_ops)"
    )
    rows = [(1, [1, 0, 0]), (2, [0, 1, 0]), (3, [0.9, 0.1, 0]), (4, [-1, 0, 0]), (5, [1, 1, 0])]
    await conn.executemany("INSERT INTO items VALUES ($1, $2)", rows)

    await conn.execute("SET enable_seqscan = off")  # make the planner use the HNSW index
    query = "SELECT id FROM items ORDER BY embedding <=> $1 LIMIT 5"
    plan = "\n".join(row[0] for row in await conn.fetch("EXPLAIN " + query, [1, 0, 0]))
    assert "items_embedding" in plan
    assert [row["id"] for row in await conn.fetch(query, [1, 0, 0])] == [1, 3, 5, 2, 4]

    distance = await conn.fetchval("SELECT embedding <=> $1 FROM items WHERE id = 2", [1, 0, 0])
    assert distance == pytest.approx(1.0)
    assert await conn.fetchval("SELECT embedding FROM items WHERE id = 3") == Vector([0.9, 0.1, 0])


async def test_sqlalchemy_vector_type(pgvector_server: PgvectorServer) -> None:
    metadata = MetaData()
    docs = Table(
        "docs",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("embedding", VectorType(3), nullable=False),
    )
    url = pgvector_server.url.replace("postgresql://", "postgresql+asyncpg://", 1)
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS vector")
            await connection.run_sync(metadata.drop_all)
            await connection.run_sync(metadata.create_all)
            await connection.execute(
                docs.insert(),
                [{"id": 1, "embedding": [0, 1, 0]}, {"id": 2, "embedding": [1, 0, 0]}],
            )
            nearest = select(docs.c.id).order_by(docs.c.embedding.cosine_distance([1, 0.1, 0]))
            assert (await connection.scalars(nearest)).all() == [2, 1]
    finally:
        await engine.dispose()


def test_stop_leaves_nothing_behind(pgvector_server: PgvectorServer) -> None:
    server = start_pgvector_server()
    pid = _postmaster_pid(server.data_dir / "postmaster.pid")
    assert pid is not None and _alive(pid)
    assert server.port != pgvector_server.port

    server.stop()
    server.stop()  # idempotent

    assert not _alive(pid)
    assert not server.base_dir.exists()


def test_a_failed_start_cleans_up(tmp_path: Path, pgvector_server: PgvectorServer) -> None:
    # Under pytest's root-private tmp_path the postgres user cannot work when we run as
    # root; as another user, a socket path too long for a unix socket fails the start.
    parent = tmp_path / ("d" * 100)
    parent.mkdir()
    with pytest.raises(PgvectorServerError):
        start_pgvector_server(parent)
    assert list(parent.iterdir()) == []
