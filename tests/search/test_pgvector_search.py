"""Semantic search on PostgreSQL with pgvector: the migration adds the vector column and
its HNSW index, the indexer fills it, searches use it (EXPLAIN) and answer what the
embedded index answers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from huddle.app import create_app
from huddle.core.migrate import upgrade
from huddle.search.vectors import VectorIndex, Visibility
from tests.conftest import _pg_admin
from tests.search.test_semantic import _content, ask, indexed
from tests.world import build_world

pytestmark = pytest.mark.semantic


@pytest.fixture
async def pgvector_url(pgvector_server) -> AsyncIterator[str]:
    name = f"huddle_pgv_{uuid.uuid4().hex[:8]}"
    await _pg_admin(pgvector_server.url, f'CREATE DATABASE "{name}"')
    url = pgvector_server.url.rsplit("/", 1)[0] + f"/{name}"
    await asyncio.to_thread(upgrade, url)
    try:
        yield url
    finally:
        await _pg_admin(pgvector_server.url, f'DROP DATABASE "{name}" WITH (FORCE)')


async def test_search_runs_on_pgvector_and_agrees_with_the_embedded_index(
    pgvector_url, make_settings, start_app
):
    app = create_app(make_settings(database_url=pgvector_url))
    world = await build_world(await start_app(app), app, chat=True)
    ids = await _content(world)
    await indexed(app)
    index: VectorIndex = app.state.semantic.index
    async with app.state.db.read_session() as session:
        assert await index.uses_pgvector(session)
        filled = await session.scalar(
            text("SELECT count(*) FROM chunks WHERE embedding_vec IS NOT NULL")
        )
        total = await session.scalar(text("SELECT count(*) FROM chunks"))
        assert filled == total and total > 0

    rollback = await ask(world, "viewer", "how do I undo a bad release?")
    assert rollback["sources"][0]["id"] == ids["doc"]
    question = "which company are we going to buy?"
    admin = {s["id"] for s in (await ask(world, "admin", question))["sources"]}
    assert ids["secret"] in admin and ids["private"] not in admin
    viewer = {s["id"] for s in (await ask(world, "viewer", question))["sources"]}
    assert not {ids["secret"], ids["private"]} & viewer

    # The same question through both implementations finds the same chunks, in order.
    embedder = app.state.semantic.embedder
    query = (await embedder.embed([question]))[0]
    from huddle.access.channels import readable_channel_ids
    from huddle.access.roles import Role
    from huddle.access.service import visible_projects
    from huddle.projects.models import Project

    workspace = world.ids_uuid("W")
    admin_id = world.ids_uuid("admin_id")
    visibility = Visibility(
        workspace,
        visible_projects(workspace, admin_id, Role.admin).with_only_columns(Project.id),
        readable_channel_ids(workspace, admin_id, Role.admin),
    )
    embedded = VectorIndex()
    embedded._pgvector = False
    async with app.state.db.read_session() as session:
        by_pgvector = await index.nearest(session, query, visibility, 10)
    async with app.state.db.read_session() as session:
        by_numpy = await embedded.nearest(session, query, visibility, 10)
    assert [i for i, _ in by_pgvector] == [i for i, _ in by_numpy]
    for (_, a), (_, b) in zip(by_pgvector, by_numpy, strict=True):
        assert abs(a - b) < 1e-4

    # The HNSW index serves the query.
    async with app.state.db.read_session() as session:
        await session.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(
            row[0]
            for row in await session.execute(
                text(
                    "EXPLAIN SELECT id FROM chunks ORDER BY embedding_vec <=> "
                    "CAST(:q AS vector) LIMIT 5"
                ),
                {"q": "[" + ",".join(str(float(x)) for x in query) + "]"},
            )
        )
    assert "ix_chunks_embedding_hnsw" in plan, plan
