"""Documents: create, save against a base version, restore, delete — each with its event.

Who may do what (DESIGN.md §4): anyone who sees the project reads its documents;
members and admins of the project write them; a document is deleted by its creator or a
project admin (as tasks are).
"""

from __future__ import annotations

import uuid

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from huddle.access.channels import channel_access
from huddle.access.deps import Caller
from huddle.access.roles import Role
from huddle.access.service import ProjectAccess, project_access
from huddle.core.cache import ScopedCache
from huddle.core.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from huddle.core.ids import new_id
from huddle.core.time import utcnow
from huddle.documents.models import Document, DocumentVersion
from huddle.documents.schemas import DocumentCreate, DocumentRead, DocumentSave
from huddle.events import topics
from huddle.events.service import record
from huddle.tasks.columns import require_writable


def document_read(document: Document) -> DocumentRead:
    return DocumentRead.model_validate(document)


async def document_access(
    session: AsyncSession, cache: ScopedCache, user_id: uuid.UUID, document_id: uuid.UUID
) -> tuple[Document, ProjectAccess]:
    """The document and the caller's access to its project; 404 unless they see both."""
    document = await session.get(Document, document_id)
    if document is None:
        raise NotFound("Document not found")
    try:
        access = await project_access(session, cache, user_id, document.project_id)
    except NotFound:
        raise NotFound("Document not found") from None
    return document, access


async def check_channel(
    session: AsyncSession,
    cache: ScopedCache,
    caller: Caller,
    access: ProjectAccess,
    channel_id: uuid.UUID | None,
) -> None:
    """A document is pinned to a channel the caller may post in, in its project's
    workspace, that is not another project's channel (422 otherwise)."""
    if channel_id is None:
        return
    problem = None
    try:
        channel = await channel_access(session, cache, caller.id, channel_id)
    except NotFound:
        problem = "no such channel"
    else:
        if channel.channel.workspace_id != access.project.workspace_id:
            problem = "no such channel"
        elif channel.channel.project_id not in (None, access.project.id):
            problem = "the channel belongs to another project"
        elif not channel.can_read or not channel.role.at_least(Role.member):
            problem = "you cannot post in that channel"
    if problem is not None:
        raise ValidationFailed(
            "The document cannot be pinned to that channel",
            details=[{"loc": ["body", "channel_id"], "msg": problem}],
        )


async def _record(
    session: AsyncSession, caller: Caller, event_type: str, document: Document
) -> DocumentRead:
    data = document_read(document)
    await record(
        session,
        event_type,
        topic=topics.project(document.project_id),
        actor=caller.actor,
        data=data,
        workspace_id=document.workspace_id,
        subject_id=document.id,
    )
    return data


def _add_version(
    session: AsyncSession, document: Document, author: uuid.UUID, restored_from: int | None
) -> None:
    session.add(
        DocumentVersion(
            document_id=document.id,
            version=document.version,
            title=document.title,
            content=document.content,
            author_id=author,
            restored_from=restored_from,
        )
    )


async def create_document(
    session: AsyncSession,
    cache: ScopedCache,
    caller: Caller,
    access: ProjectAccess,
    data: DocumentCreate,
) -> DocumentRead:
    """A new document at version 1 (recorded in its history)."""
    require_writable(access)
    await check_channel(session, cache, caller, access, data.channel_id)
    now = utcnow()
    document = Document(
        id=new_id(),
        workspace_id=access.project.workspace_id,
        project_id=access.project.id,
        channel_id=data.channel_id,
        title=data.title,
        content=data.content,
        version=1,
        created_by=caller.id,
        updated_by=caller.id,
        created_at=now,
        updated_at=now,
    )
    session.add(document)
    _add_version(session, document, caller.id, None)
    await session.flush()
    return await _record(session, caller, "document.created", document)


def check_if_match(document: Document, if_match: str | None) -> None:
    """Honour ``If-Match: "<version>"`` (or the bare version, or ``*``): 412 when stale."""
    if if_match is None or if_match.strip() == "*":
        return
    wanted = {part.strip().removeprefix("W/").strip('"') for part in if_match.split(",")}
    if str(document.version) not in wanted:
        raise PreconditionFailed(
            "The document changed since you read it",
            details={"current_version": document.version},
        )


def _stale(document: Document) -> Conflict:
    return Conflict(
        "The document was saved by someone else since your base version: merge your "
        "changes into the current text and save again",
        details={
            "current_version": document.version,
            "title": document.title,
            "content": document.content,
            "updated_by": str(document.updated_by) if document.updated_by else None,
            "updated_at": document.updated_at.isoformat(),
        },
    )


async def _lock(session: AsyncSession, document: Document) -> None:
    """Lock the row and re-read it: two saves from the same base cannot both pass."""
    await session.refresh(document, with_for_update=True)


async def save_document(
    session: AsyncSession,
    cache: ScopedCache,
    caller: Caller,
    access: ProjectAccess,
    document: Document,
    data: DocumentSave,
    if_match: str | None,
) -> DocumentRead:
    """Save a new title and text edited from ``base_version``.

    A stale base is 409 with the current version and text (the edit is not applied, so
    nothing anyone wrote is lost: the client merges and saves again). Saving what is
    already there makes no new version.
    """
    require_writable(access)
    await _lock(session, document)
    check_if_match(document, if_match)
    if data.base_version != document.version:
        raise _stale(document)
    channel_given = "channel_id" in data.model_fields_set
    if channel_given and data.channel_id != document.channel_id:
        await check_channel(session, cache, caller, access, data.channel_id)
    unchanged = (
        data.title == document.title
        and data.content == document.content
        and (not channel_given or data.channel_id == document.channel_id)
    )
    if unchanged:
        return document_read(document)
    if channel_given:
        document.channel_id = data.channel_id
    text_changed = data.title != document.title or data.content != document.content
    document.title = data.title
    document.content = data.content
    document.updated_by = caller.id
    document.updated_at = utcnow()
    if text_changed:
        document.version += 1
        document.indexed_at = None
        _add_version(session, document, caller.id, None)
    await session.flush()
    return await _record(session, caller, "document.updated", document)


async def restore_version(
    session: AsyncSession,
    caller: Caller,
    access: ProjectAccess,
    document: Document,
    version: int,
    if_match: str | None,
) -> DocumentRead:
    """Make an older version's title and text the current ones, as a new version."""
    require_writable(access)
    await _lock(session, document)
    check_if_match(document, if_match)
    old = await session.get(DocumentVersion, (document.id, version))
    if old is None:
        raise NotFound("No such version of this document")
    document.version += 1
    document.title = old.title
    document.content = old.content
    document.updated_by = caller.id
    document.updated_at = utcnow()
    document.indexed_at = None
    _add_version(session, document, caller.id, version)
    await session.flush()
    return await _record(session, caller, "document.updated", document)


async def delete_document(
    session: AsyncSession,
    caller: Caller,
    access: ProjectAccess,
    document: Document,
    if_match: str | None,
) -> None:
    """Delete a document and its history: its creator (member+) or a project admin."""
    require_writable(access)
    if document.created_by != caller.id:
        access.require(Role.admin, "Only project admins can delete other people's documents")
    await _lock(session, document)
    check_if_match(document, if_match)
    await _record(session, caller, "document.deleted", document)
    await session.delete(document)
    await session.flush()


def list_query(project_id: uuid.UUID, channel_id: uuid.UUID | None) -> Select[Document]:
    query = select(Document).where(Document.project_id == project_id)
    if channel_id is not None:
        query = query.where(Document.channel_id == channel_id)
    return query


async def get_version(session: AsyncSession, document: Document, version: int) -> DocumentVersion:
    row = await session.get(DocumentVersion, (document.id, version))
    if row is None:
        raise NotFound("No such version of this document")
    return row


async def list_versions(
    session: AsyncSession, document: Document, before: int | None, limit: int
) -> tuple[list[DocumentVersion], str | None]:
    """Versions newest first; the cursor is the last version number of the page."""
    query = select(DocumentVersion).where(DocumentVersion.document_id == document.id)
    if before is not None:
        query = query.where(DocumentVersion.version < before)
    rows = list(
        await session.scalars(query.order_by(DocumentVersion.version.desc()).limit(limit + 1))
    )
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, str(rows[-1].version)
    return rows, None
