"""Files: upload into a project (optionally a channel), list, download, delete.

An upload is checked before anything is kept: the caller may write in the project, the
size is within ``HUDDLE_MAX_UPLOAD_MB`` (413), the bytes really are a PDF, plain text or
markdown (415, whatever the name says), and a PDF can be read (422 when corrupt or
encrypted). Its text is extracted once, here, for search.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
import uuid
from pathlib import PurePosixPath

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from huddle.access.deps import Caller
from huddle.access.roles import Role
from huddle.access.service import ProjectAccess, project_access
from huddle.core.cache import ScopedCache
from huddle.core.db import after_commit
from huddle.core.errors import AppError, NotFound, PayloadTooLarge
from huddle.documents import extract
from huddle.documents.models import File
from huddle.documents.schemas import FileRead
from huddle.documents.service import check_channel
from huddle.documents.storage import FileStore
from huddle.events import topics
from huddle.events.service import record
from huddle.tasks.columns import require_writable

_UNSAFE = re.compile(r"[\x00-\x1f\x7f\"\\/]")


class FileRejectedError(AppError):
    """A rejected upload, in the error shape (415 or 422)."""

    def __init__(self, rejected: extract.FileRejected) -> None:
        super().__init__(str(rejected), code=rejected.code)
        self.status_code = rejected.status


def clean_filename(raw: str | None) -> str:
    """The name to show and download under: no directories, no control characters."""
    name = PurePosixPath((raw or "").replace("\\", "/")).name
    name = unicodedata.normalize("NFC", _UNSAFE.sub("", name)).strip().strip(".")
    if not name:
        return "upload"
    if len(name) > 255:
        stem, dot, suffix = name.rpartition(".")
        name = (stem[: 250 - len(suffix)] + dot + suffix) if dot and len(suffix) < 10 else name
        name = name[:255]
    return name


async def file_access(
    session: AsyncSession, cache: ScopedCache, user_id: uuid.UUID, file_id: uuid.UUID
) -> tuple[File, ProjectAccess]:
    row = await session.get(File, file_id)
    if row is None:
        raise NotFound("File not found")
    try:
        access = await project_access(session, cache, user_id, row.project_id)
    except NotFound:
        raise NotFound("File not found") from None
    return row, access


async def upload(
    session: AsyncSession,
    cache: ScopedCache,
    store: FileStore,
    caller: Caller,
    access: ProjectAccess,
    *,
    data: bytes,
    filename: str | None,
    declared_type: str | None,
    channel_id: uuid.UUID | None,
    max_bytes: int,
) -> FileRead:
    require_writable(access)
    await check_channel(session, cache, caller, access, channel_id)
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            f"The file is larger than {max_bytes // (1024 * 1024)} MB",
            details={"limit": max_bytes, "size": len(data)},
        )
    name = clean_filename(filename)
    try:
        content_type = extract.detect_type(data, name, declared_type)
        text = await asyncio.to_thread(extract.extract_text, data, content_type)
    except extract.FileRejected as exc:
        raise FileRejectedError(exc) from None
    stored = await store.save(data)
    try:
        row = File(
            workspace_id=access.project.workspace_id,
            project_id=access.project.id,
            channel_id=channel_id,
            filename=name,
            content_type=content_type,
            size=stored.size,
            sha256=stored.sha256,
            storage_name=stored.name,
            text=text,
            uploaded_by=caller.id,
        )
        session.add(row)
        await session.flush()
        return await _record(session, caller, "file.uploaded", row)
    except BaseException:
        await store.delete(stored.name)
        raise


async def _record(session: AsyncSession, caller: Caller, event_type: str, row: File) -> FileRead:
    data = FileRead.model_validate(row)
    await record(
        session,
        event_type,
        topic=topics.project(row.project_id),
        actor=caller.actor,
        data=data,
        workspace_id=row.workspace_id,
        subject_id=row.id,
    )
    return data


async def delete(
    session: AsyncSession, store: FileStore, caller: Caller, access: ProjectAccess, row: File
) -> None:
    """Delete a file: its uploader (member+) or a project admin. The bytes go once the
    deletion has committed."""
    require_writable(access)
    if row.uploaded_by != caller.id:
        access.require(Role.admin, "Only project admins can delete other people's files")
    await _record(session, caller, "file.deleted", row)
    name = row.storage_name
    await session.delete(row)
    await session.flush()

    async def remove() -> None:
        await store.delete(name)

    after_commit(session, remove)


def list_query(project_id: uuid.UUID, channel_id: uuid.UUID | None) -> Select[File]:
    query = select(File).where(File.project_id == project_id)
    if channel_id is not None:
        query = query.where(File.channel_id == channel_id)
    return query
