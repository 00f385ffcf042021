"""Nearest chunks to a query vector, among those the caller may see.

Two implementations behind :class:`VectorIndex`, chosen per database at first use:

* **pgvector** — PostgreSQL with the extension: the migration added
  ``chunks.embedding_vec vector(384)`` and an HNSW index (cosine). The query filters by
  visibility in SQL; ``hnsw.iterative_scan`` keeps filtered queries returning enough rows.
* **embedded** — SQLite, or PostgreSQL without pgvector: each process keeps a workspace's
  vectors in a numpy matrix (float32, unit rows) and scores by one matrix product. It is
  loaded on first search and kept current by the workspace's ``index_generations`` row,
  which the indexer bumps in the same transaction as any chunk change: a search reads
  that row (one primary-key lookup) and, when it moved, reads the workspace's chunk ids
  and loads only the vectors it does not hold yet.

Visibility is decided at query time from the access rules (:mod:`huddle.access`):
document and file chunks by their project, message chunks by their channel. Results are
chunk ids and cosine similarities; the caller re-reads the rows (so a chunk deleted in
between simply drops out).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    Column,
    ColumnElement,
    MetaData,
    Select,
    Table,
    Uuid,
    and_,
    bindparam,
    false,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from huddle.search.embeddings import DIMENSIONS, Vectors
from huddle.search.models import Chunk, IndexGeneration, SourceKind

# The pgvector column, which only exists where the extension does (not in the ORM model).
_vec_table = Table(
    "chunks",
    MetaData(),
    Column("id", Uuid, primary_key=True),
    Column("embedding_vec", Vector(DIMENSIONS)),
)
_LOAD_BATCH = 2000
_KIND_CODES = {SourceKind.document: 0, SourceKind.file: 1, SourceKind.message: 2}


def to_bytes(vector: Vectors) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def from_bytes(raw: bytes) -> Vectors:
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


@dataclass(frozen=True)
class Visibility:
    """What a search may return: chunks in these workspaces' projects and channels.

    ``project_ids`` and ``channel_ids`` are selects of ids (the access rules), optionally
    narrowed by the request's own filters; ``kinds`` limits source kinds;
    ``content_channels``, when given, keeps only documents and files pinned or attached to
    one of those channels.
    """

    workspace_id: uuid.UUID
    project_ids: Select[uuid.UUID]
    channel_ids: Select[uuid.UUID]
    kinds: frozenset[SourceKind] = frozenset(SourceKind)
    content_channels: list[uuid.UUID] | None = None
    model: str | None = None  # only vectors this embedding model made (None: any)

    def clause(self) -> ColumnElement[bool]:
        rules: list[ColumnElement[bool]] = []
        content = [k for k in (SourceKind.document, SourceKind.file) if k in self.kinds]
        if content:
            rule = and_(Chunk.source_kind.in_(content), Chunk.project_id.in_(self.project_ids))
            if self.content_channels is not None:
                rule = and_(rule, Chunk.channel_id.in_(self.content_channels))
            rules.append(rule)
        if SourceKind.message in self.kinds:
            rules.append(
                and_(
                    Chunk.source_kind == SourceKind.message,
                    Chunk.channel_id.in_(self.channel_ids),
                )
            )
        scope = Chunk.workspace_id == self.workspace_id
        if self.model is not None:
            scope = and_(scope, Chunk.model == self.model)
        return and_(scope, or_(*rules) if rules else false())


@dataclass
class _Matrix:
    """One workspace's vectors in this process."""

    generation: int = -1
    ids: list[uuid.UUID] = field(default_factory=list)
    kinds: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int8))
    # Each row's project and channel as small integers (``codes``), so visibility is a
    # vectorised ``np.isin`` rather than a Python loop over every row.
    projects: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    channels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    codes: dict[uuid.UUID | None, int] = field(default_factory=lambda: {None: 0})
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, DIMENSIONS), np.float32))
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def code(self, value: uuid.UUID | None) -> int:
        return self.codes.setdefault(value, len(self.codes))

    def known(self, values: Iterable[uuid.UUID]) -> np.ndarray:
        """The codes of those of ``values`` some row refers to."""
        found = [self.codes[v] for v in values if v in self.codes]
        return np.asarray(found, dtype=np.int32)


class VectorIndex:
    """The process's vector search (see the module docstring)."""

    def __init__(self) -> None:
        self._pgvector: bool | None = None
        self._matrices: dict[tuple[uuid.UUID, str | None], _Matrix] = {}

    async def uses_pgvector(self, session: AsyncSession) -> bool:
        if self._pgvector is None:
            if session.get_bind().dialect.name != "postgresql":
                self._pgvector = False
            else:
                found = await session.scalar(
                    text(
                        "SELECT 1 FROM information_schema.columns WHERE table_schema = "
                        "current_schema() AND table_name = 'chunks' AND column_name = "
                        "'embedding_vec'"
                    )
                )
                self._pgvector = found is not None
        return self._pgvector

    async def written(
        self, session: AsyncSession, ids: Sequence[uuid.UUID], vectors: Vectors
    ) -> None:
        """New chunks were added in this transaction: fill their pgvector column."""
        if not ids or not await self.uses_pgvector(session):
            return
        await session.execute(
            update(_vec_table)
            .where(_vec_table.c.id == bindparam("chunk_id"))
            .values(embedding_vec=bindparam("vec"))
            .execution_options(synchronize_session=False),
            [{"chunk_id": i, "vec": v} for i, v in zip(ids, vectors, strict=True)],
        )

    async def nearest(
        self, session: AsyncSession, query: Vectors, visibility: Visibility, k: int
    ) -> list[tuple[uuid.UUID, float]]:
        """The ``k`` visible chunks most similar to ``query``: (chunk id, cosine), best first."""
        if await self.uses_pgvector(session):
            return await self._nearest_pgvector(session, query, visibility, k)
        return await self._nearest_embedded(session, query, visibility, k)

    # --- pgvector ------------------------------------------------------------------------

    async def _nearest_pgvector(
        self, session: AsyncSession, query: Vectors, visibility: Visibility, k: int
    ) -> list[tuple[uuid.UUID, float]]:
        # Filtered HNSW scans stop at ef_search candidates; iterative scans go on until k
        # rows pass the filter (pgvector >= 0.8). SET LOCAL: this transaction only.
        await session.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
        await session.execute(text(f"SET LOCAL hnsw.ef_search = {max(40, min(k, 1000))}"))
        column = literal_column("chunks.embedding_vec", type_=Vector(DIMENSIONS))
        distance = column.cosine_distance(np.asarray(query, dtype=np.float32))
        rows = await session.execute(
            select(Chunk.id, distance.label("distance"))
            .where(visibility.clause())
            .order_by(distance)
            .limit(k)
        )
        found = [(row.id, 1.0 - float(row.distance)) for row in rows]
        found.sort(key=lambda pair: pair[1], reverse=True)  # relaxed order: sort here
        return found

    # --- embedded ------------------------------------------------------------------------

    async def _nearest_embedded(
        self, session: AsyncSession, query: Vectors, visibility: Visibility, k: int
    ) -> list[tuple[uuid.UUID, float]]:
        matrix = await self._current(session, visibility.workspace_id, visibility.model)
        if not matrix.ids:
            return []
        projects = matrix.known(await session.scalars(visibility.project_ids))
        channels = matrix.known(await session.scalars(visibility.channel_ids))
        kinds = [_KIND_CODES[kind] for kind in visibility.kinds]
        is_message = matrix.kinds == _KIND_CODES[SourceKind.message]
        content = np.isin(matrix.projects, projects)
        if visibility.content_channels is not None:
            content &= np.isin(matrix.channels, matrix.known(visibility.content_channels))
        mask = np.isin(matrix.kinds, kinds) & np.where(
            is_message, np.isin(matrix.channels, channels), content
        )
        rows = np.flatnonzero(mask)
        if rows.size == 0:
            return []
        scores = matrix.vectors[rows] @ np.asarray(query, dtype=np.float32)
        top = min(k, rows.size)
        best = np.argpartition(-scores, top - 1)[:top]
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(matrix.ids[int(rows[i])], float(scores[i])) for i in best]

    async def _current(
        self, session: AsyncSession, workspace_id: uuid.UUID, model: str | None
    ) -> _Matrix:
        matrix = self._matrices.setdefault((workspace_id, model), _Matrix())
        generation = await self._generation(session, workspace_id)
        if generation == matrix.generation:
            return matrix
        async with matrix.lock:
            if generation != matrix.generation:
                await self._refresh(session, workspace_id, model, matrix, generation)
        return matrix

    @staticmethod
    async def _generation(session: AsyncSession, workspace_id: uuid.UUID) -> int:
        value = await session.scalar(
            select(IndexGeneration.generation).where(IndexGeneration.workspace_id == workspace_id)
        )
        return int(value or 0)

    @staticmethod
    async def _refresh(
        session: AsyncSession,
        workspace_id: uuid.UUID,
        model: str | None,
        matrix: _Matrix,
        generation: int,
    ) -> None:
        held_here = select(Chunk.id).where(Chunk.workspace_id == workspace_id)
        if model is not None:
            held_here = held_here.where(Chunk.model == model)
        current = list(await session.scalars(held_here))
        wanted = set(current)
        keep = [i for i, chunk_id in enumerate(matrix.ids) if chunk_id in wanted]
        held = {matrix.ids[i] for i in keep}
        missing = [chunk_id for chunk_id in current if chunk_id not in held]
        ids = [matrix.ids[i] for i in keep]
        kinds = [matrix.kinds[keep]]
        projects = [matrix.projects[keep]]
        channels = [matrix.channels[keep]]
        blocks = [matrix.vectors[keep]] if keep else []
        for start in range(0, len(missing), _LOAD_BATCH):
            batch = missing[start : start + _LOAD_BATCH]
            rows = await session.execute(
                select(
                    Chunk.id, Chunk.source_kind, Chunk.project_id, Chunk.channel_id, Chunk.embedding
                ).where(Chunk.id.in_(batch))
            )
            loaded = list(rows)
            ids += [row.id for row in loaded]
            kinds.append(np.asarray([_KIND_CODES[row.source_kind] for row in loaded], np.int8))
            projects.append(np.asarray([matrix.code(row.project_id) for row in loaded], np.int32))
            channels.append(np.asarray([matrix.code(row.channel_id) for row in loaded], np.int32))
            if loaded:
                blocks.append(np.stack([from_bytes(row.embedding) for row in loaded]))
        matrix.ids = ids
        matrix.kinds = np.concatenate(kinds).astype(np.int8, copy=False)
        matrix.projects = np.concatenate(projects).astype(np.int32, copy=False)
        matrix.channels = np.concatenate(channels).astype(np.int32, copy=False)
        matrix.vectors = (
            np.concatenate(blocks).astype(np.float32, copy=False)
            if blocks
            else np.zeros((0, DIMENSIONS), np.float32)
        )
        matrix.generation = generation
