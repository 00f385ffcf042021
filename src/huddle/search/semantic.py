"""``POST /api/ai/search``: the passages of a workspace closest in meaning to a question.

The question is embedded, the nearest visible chunks are found (:mod:`.vectors`), and
the best chunk of each source (document, file, message) becomes one source in the
answer, best first. Visibility follows the access rules at query time, so a private
project's or channel's content never reaches someone who cannot read it, whatever the
index holds. ``answer`` is left null here: the AI assistant generates one from the
sources when an LLM is configured.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from huddle.access.channels import channel_access, readable_channel_ids
from huddle.access.deps import Caller
from huddle.access.service import project_access, visible_projects, workspace_access
from huddle.chat.channels import DM_TITLE
from huddle.chat.models import Channel, ChannelKind, Message
from huddle.core.cache import ScopedCache
from huddle.core.errors import NotFound
from huddle.documents.models import Document, File
from huddle.projects.models import Project
from huddle.search.embeddings import Embedder
from huddle.search.models import Chunk, SourceKind
from huddle.search.schemas import AISearchAnswer, AISearchRequest, AISource
from huddle.search.vectors import VectorIndex, Visibility

SNIPPET_CHARS = 300
#: Chunks fetched per source wanted: several chunks of one source may come first.
OVERFETCH = 4
#: The REST collection each kind of source is read from (a source's link back).
_URL_PARTS = {
    SourceKind.document: "documents",
    SourceKind.file: "files",
    SourceKind.message: "messages",
}


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= SNIPPET_CHARS:
        return text
    cut = text.rfind(" ", 0, SNIPPET_CHARS)
    return text[: cut if cut > SNIPPET_CHARS // 2 else SNIPPET_CHARS] + "…"


async def _visibility(
    session: AsyncSession,
    cache: ScopedCache,
    caller: Caller,
    request: AISearchRequest,
    model: str,
) -> Visibility:
    """What this caller may get back, narrowed by the request's project and channels
    (404 for a project or channel they cannot see, as everywhere)."""
    access = await workspace_access(session, cache, caller.id, request.workspace_id)
    workspace_id = access.workspace.id
    projects = visible_projects(workspace_id, caller.id, access.role).with_only_columns(Project.id)
    channels = readable_channel_ids(workspace_id, caller.id, access.role)
    kinds = frozenset(SourceKind)
    if request.project_id is not None:
        project = await project_access(session, cache, caller.id, request.project_id)
        if project.project.workspace_id != workspace_id:
            raise NotFound("Project not found")
        projects = projects.where(Project.id == request.project_id)
        channels = channels.where(Channel.project_id == request.project_id)
    if request.channel_ids:
        for channel_id in request.channel_ids:
            channel = await channel_access(session, cache, caller.id, channel_id)
            if channel.channel.workspace_id != workspace_id or not channel.can_read:
                raise NotFound("Channel not found")
        channels = channels.where(Channel.id.in_(request.channel_ids))
    return Visibility(
        workspace_id,
        projects,
        channels,
        kinds,
        content_channels=request.channel_ids or None,
        model=model,
    )


async def search(
    session: AsyncSession,
    cache: ScopedCache,
    embedder: Embedder,
    index: VectorIndex,
    caller: Caller,
    request: AISearchRequest,
) -> AISearchAnswer:
    visibility = await _visibility(session, cache, caller, request, embedder.name)
    query = (await embedder.embed([request.query]))[0]
    nearest = await index.nearest(session, query, visibility, request.limit * OVERFETCH)
    if not nearest:
        return AISearchAnswer(answer=None, sources=[])
    scores = dict(nearest)
    rows = list(
        await session.execute(
            select(
                Chunk.id,
                Chunk.source_kind,
                Chunk.source_id,
                Chunk.text,
                Chunk.project_id,
                Chunk.channel_id,
            ).where(Chunk.id.in_(list(scores)), visibility.clause())
        )
    )
    rows.sort(key=lambda row: scores[row.id], reverse=True)
    best: dict[uuid.UUID, Any] = {}
    for row in rows:
        best.setdefault(row.source_id, row)
    chosen = list(best.values())
    titles = await _titles(session, chosen)
    sources = [
        AISource(
            kind=row.source_kind.value,
            id=row.source_id,
            title=titles[row.source_id],
            snippet=_snippet(row.text),
            score=round(scores[row.id], 6),
            project_id=row.project_id,
            channel_id=row.channel_id,
            url=f"/api/{_URL_PARTS[row.source_kind]}/{row.source_id}",
        )
        for row in chosen
        if row.source_id in titles  # deleted since it was indexed: left out
    ]
    return AISearchAnswer(answer=None, sources=sources[: request.limit])


async def _titles(session: AsyncSession, rows: list[Any]) -> dict[uuid.UUID, str]:
    """Each live source's title: a document's title, a file's name, a message's channel."""
    ids: dict[SourceKind, list[uuid.UUID]] = {}
    for row in rows:
        ids.setdefault(row.source_kind, []).append(row.source_id)
    titles: dict[uuid.UUID, str] = {}
    if wanted := ids.get(SourceKind.document):
        found = await session.execute(
            select(Document.id, Document.title).where(Document.id.in_(wanted))
        )
        titles.update((row[0], row[1]) for row in found)
    if wanted := ids.get(SourceKind.file):
        found = await session.execute(select(File.id, File.filename).where(File.id.in_(wanted)))
        titles.update((row[0], row[1]) for row in found)
    if wanted := ids.get(SourceKind.message):
        messages = await session.execute(
            select(Message.id, Channel.name, Channel.kind)
            .join(Channel, Channel.id == Message.channel_id)
            .where(Message.id.in_(wanted), Message.deleted_at.is_(None))
        )
        for message_id, name, kind in messages:
            titles[message_id] = DM_TITLE if kind is ChannelKind.dm else name
    return titles
