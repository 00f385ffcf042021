"""Keeping the semantic index in step with documents, files and messages.

The indexer is an outbox consumer: a :class:`~huddle.events.forwarder.Forwarder` feeds it
the published events in ``seq`` order with its own cursor (``bus_cursors`` row
``search-index/<model>``), so indexing happens after commit, in the background, at least once,
and resumes where it stopped after a restart. Its cursor starts at the beginning of the
log, so an existing installation indexes what was written before it had the feature.

An event only names a source (``subject_id``); the indexer reads the source's *current*
state and makes its chunks match it: re-chunked and re-embedded when its text changed
(by a hash of what would be embedded), removed when the source is gone. Replaying or
reordering events is therefore harmless. Documents and files get ``indexed_at`` once the
chunks of the version read are written (not when a newer save came meanwhile: its own
event indexes it again).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from huddle.chat.models import Channel, Message
from huddle.core.db import Database
from huddle.core.ids import new_id
from huddle.core.time import utcnow
from huddle.documents.models import Document, File
from huddle.events.bus import BusUnavailable
from huddle.events.schemas import Envelope
from huddle.search import chunking
from huddle.search.embeddings import Embedder, EmbeddingError
from huddle.search.models import Chunk, IndexGeneration, SourceKind
from huddle.search.vectors import VectorIndex, to_bytes

log = logging.getLogger("huddle.search")


def cursor_name(model: str) -> str:
    """The indexer's ``bus_cursors`` row: one per embedding model, so switching models
    replays the log and re-embeds every source with the new one."""
    return f"search-index/{model}"


#: Event types that change a source's text, and the kind of source they are about.
INDEXED_EVENTS: dict[str, SourceKind] = {
    "document.created": SourceKind.document,
    "document.updated": SourceKind.document,
    "document.deleted": SourceKind.document,
    "file.uploaded": SourceKind.file,
    "file.deleted": SourceKind.file,
    "message.created": SourceKind.message,
    "message.updated": SourceKind.message,
    "message.deleted": SourceKind.message,
}
#: Sources indexed per transaction (a backlog is worked through in such steps).
SOURCES_PER_STEP = 64


@dataclass(frozen=True)
class Piece:
    heading: str | None
    text: str  # stored for snippets

    @property
    def embedding_text(self) -> str:
        """What is embedded: the heading path above the text (as chunking.Chunk does)."""
        return f"{self.heading}\n{self.text}" if self.heading else self.text


@dataclass
class Source:
    """What a source would be indexed as, read from its current state."""

    kind: SourceKind
    id: uuid.UUID
    workspace_id: uuid.UUID
    project_id: uuid.UUID | None
    channel_id: uuid.UUID | None
    pieces: list[Piece]
    version: int | None = None  # a document's version when read

    @property
    def digest(self) -> str:
        hasher = hashlib.sha256()
        # Where it is shown counts too: re-pinning a document moves its chunks.
        hasher.update(f"{self.project_id}/{self.channel_id}\x02".encode())
        for piece in self.pieces:
            hasher.update((piece.heading or "").encode())
            hasher.update(b"\x00")
            hasher.update(piece.text.encode())
            hasher.update(b"\x01")
        return hasher.hexdigest()


def _pieces(text: str, title: str | None) -> list[Piece]:
    return [Piece(c.heading, c.text) for c in chunking.chunk_text(text, title=title)]


class SemanticIndexer:
    """The event consumer (an :class:`~huddle.events.bus.EventBus` for the forwarder)."""

    def __init__(self, db: Database, embedder: Embedder, vectors: VectorIndex) -> None:
        self._db = db
        self.embedder = embedder
        self._vectors = vectors

    async def publish(self, batch: Sequence[Envelope]) -> None:
        wanted: dict[tuple[SourceKind, uuid.UUID], None] = {}
        for envelope in batch:
            kind = INDEXED_EVENTS.get(envelope.type)
            if kind is not None and envelope.subject_id is not None:
                wanted[(kind, envelope.subject_id)] = None
        await self.index(list(wanted))

    async def aclose(self) -> None:
        await self.embedder.aclose()

    async def index(self, sources: Sequence[tuple[SourceKind, uuid.UUID]]) -> None:
        """Make the chunks of ``sources`` match their current state."""
        for start in range(0, len(sources), SOURCES_PER_STEP):
            await self._step(sources[start : start + SOURCES_PER_STEP])

    async def _step(self, keys: Sequence[tuple[SourceKind, uuid.UUID]]) -> None:
        async with self._db.read_session() as session:
            current = await _read_sources(session, keys)
            stored = await _stored_digests(session, [key[1] for key in keys])
        changed = [
            source
            for source in current.values()
            if stored.get(source.id) != (source.digest, self.embedder.name)
        ]
        gone = [key[1] for key in keys if key not in current and key[1] in stored]
        texts = [piece.embedding_text for source in changed for piece in source.pieces]
        try:
            vectors = await self.embedder.embed(texts)
        except EmbeddingError as exc:  # an endpoint down: the forwarder backs off and retries
            raise BusUnavailable(str(exc)) from exc
        async with self._db.write_session() as session:
            touched: set[uuid.UUID] = set()
            replaced = [source.id for source in changed] + gone
            if replaced:
                workspaces = await session.scalars(
                    select(Chunk.workspace_id).where(Chunk.source_id.in_(replaced)).distinct()
                )
                touched.update(workspaces)
                await session.execute(
                    delete(Chunk)
                    .where(Chunk.source_id.in_(replaced))
                    .execution_options(synchronize_session=False)
                )
            ids: list[uuid.UUID] = []
            row = 0
            for source in changed:
                digest = source.digest
                touched.add(source.workspace_id)
                for ordinal, piece in enumerate(source.pieces):
                    chunk_id = new_id()
                    ids.append(chunk_id)
                    session.add(
                        Chunk(
                            id=chunk_id,
                            workspace_id=source.workspace_id,
                            project_id=source.project_id,
                            channel_id=source.channel_id,
                            source_kind=source.kind,
                            source_id=source.id,
                            ordinal=ordinal,
                            heading=piece.heading[:300] if piece.heading else None,
                            text=piece.text,
                            source_hash=digest,
                            model=self.embedder.name,
                            embedding=to_bytes(vectors[row]),
                        )
                    )
                    row += 1
            await session.flush()
            await self._vectors.written(session, ids, vectors)
            await _mark_indexed(session, current.values())
            await bump_generations(session, touched)
            await session.commit()
        if changed or gone:
            log.debug("indexed %d sources, removed %d", len(changed), len(gone))


async def _read_sources(
    session: AsyncSession, keys: Iterable[tuple[SourceKind, uuid.UUID]]
) -> dict[tuple[SourceKind, uuid.UUID], Source]:
    by_kind: dict[SourceKind, list[uuid.UUID]] = {}
    for kind, source_id in keys:
        by_kind.setdefault(kind, []).append(source_id)
    found: dict[tuple[SourceKind, uuid.UUID], Source] = {}
    if ids := by_kind.get(SourceKind.document):
        for doc in await session.scalars(select(Document).where(Document.id.in_(ids))):
            found[(SourceKind.document, doc.id)] = Source(
                SourceKind.document,
                doc.id,
                doc.workspace_id,
                doc.project_id,
                doc.channel_id,
                _pieces(doc.content, doc.title),
                doc.version,
            )
    if ids := by_kind.get(SourceKind.file):
        for file in await session.scalars(select(File).where(File.id.in_(ids))):
            found[(SourceKind.file, file.id)] = Source(
                SourceKind.file,
                file.id,
                file.workspace_id,
                file.project_id,
                file.channel_id,
                _pieces(file.text, file.filename),
            )
    if ids := by_kind.get(SourceKind.message):
        rows = await session.execute(
            select(Message.id, Message.content, Channel.workspace_id, Channel.project_id)
            .join(Channel, Channel.id == Message.channel_id)
            .where(Message.id.in_(ids), Message.deleted_at.is_(None))
            .add_columns(Message.channel_id)
        )
        for row in rows:
            if row.content.strip():
                found[(SourceKind.message, row.id)] = Source(
                    SourceKind.message,
                    row.id,
                    row.workspace_id,
                    row.project_id,
                    row.channel_id,
                    _pieces(row.content, None),
                )
    return found


async def _stored_digests(
    session: AsyncSession, source_ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[str, str]]:
    rows = await session.execute(
        select(Chunk.source_id, Chunk.source_hash, Chunk.model).where(
            Chunk.source_id.in_(source_ids), Chunk.ordinal == 0
        )
    )
    return {row.source_id: (row.source_hash, row.model) for row in rows}


async def _mark_indexed(session: AsyncSession, sources: Iterable[Source]) -> None:
    now = utcnow()
    for source in sources:
        if source.kind is SourceKind.document:
            await session.execute(
                update(Document)
                .where(Document.id == source.id, Document.version == source.version)
                .where(Document.indexed_at.is_(None))
                .values(indexed_at=now)
                .execution_options(synchronize_session=False)
            )
        elif source.kind is SourceKind.file:
            await session.execute(
                update(File)
                .where(File.id == source.id, File.indexed_at.is_(None))
                .values(indexed_at=now)
                .execution_options(synchronize_session=False)
            )


async def bump_generations(session: AsyncSession, workspaces: set[uuid.UUID]) -> None:
    """In the transaction that changed these workspaces' chunks: in-process vector
    indexes see, with one primary-key read, that they must reload."""
    for workspace_id in sorted(workspaces):
        result = await session.execute(
            update(IndexGeneration)
            .where(IndexGeneration.workspace_id == workspace_id)
            .values(generation=IndexGeneration.generation + 1)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            session.add(IndexGeneration(workspace_id=workspace_id, generation=1))
    await session.flush()
