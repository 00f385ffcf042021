"""Documents, their versions, and files over HTTP."""

from __future__ import annotations

import re
import uuid
from typing import Annotated
from urllib.parse import quote

from fastapi import (
    APIRouter,
    Depends,
    Form,
    Header,
    Path,
    Query,
    Request,
    Response,
    UploadFile,
    status,
)
from fastapi import File as FilePart
from starlette.types import Scope

from huddle.access.deps import CurrentCaller, ProjectAccessDep, RoleCache
from huddle.access.service import ProjectAccess
from huddle.config import Settings
from huddle.core.bodylimit import LimitFor
from huddle.core.db import SessionDep
from huddle.core.errors import ERROR_RESPONSES, NotFound
from huddle.core.pagination import Page, PageParamsDep, paginate
from huddle.documents import files, service
from huddle.documents.models import Document, DocumentVersion, File
from huddle.documents.schemas import (
    DocumentCreate,
    DocumentRead,
    DocumentSave,
    DocumentSummary,
    DocumentVersionRead,
    DocumentVersionSummary,
    FileRead,
)
from huddle.documents.storage import FileStore

router = APIRouter(prefix="/api", tags=["documents"], responses=ERROR_RESPONSES)
NO_CONTENT = status.HTTP_204_NO_CONTENT
IfMatch = Annotated[
    str | None, Header(max_length=200, description='The document\'s ETag, e.g. "3"')
]
VersionNumber = Annotated[int, Path(ge=1, le=2**31 - 1)]
ChannelFilter = Annotated[
    uuid.UUID | None, Query(description="Only those pinned/attached to this channel")
]

#: Multipart framing around the file itself (boundaries, part headers, channel_id).
_MULTIPART_OVERHEAD = 64 * 1024
_UPLOAD_PATH = re.compile(r"^/api/projects/[^/]+/files/?$")


def upload_body_limit(settings: Settings) -> LimitFor:
    """The body limit of upload requests (the default one applies elsewhere)."""
    limit = settings.max_upload_mb * 1024 * 1024 + _MULTIPART_OVERHEAD

    def limit_for(scope: Scope) -> int | None:
        if scope.get("method") == "POST" and _UPLOAD_PATH.match(scope.get("path", "")):
            return limit
        return None

    return limit_for


def get_file_store(request: Request) -> FileStore:
    store: FileStore = request.app.state.file_store
    return store


FileStoreDep = Annotated[FileStore, Depends(get_file_store)]


def _etag(response: Response, document: DocumentRead) -> DocumentRead:
    response.headers["ETag"] = f'"{document.version}"'
    return document


async def _document(
    did: uuid.UUID, caller: CurrentCaller, session: SessionDep, cache: RoleCache
) -> tuple[Document, ProjectAccess]:
    return await service.document_access(session, cache, caller.id, did)


async def _file(
    fid: uuid.UUID, caller: CurrentCaller, session: SessionDep, cache: RoleCache
) -> tuple[File, ProjectAccess]:
    return await files.file_access(session, cache, caller.id, fid)


DocumentDep = Annotated[tuple[Document, ProjectAccess], Depends(_document)]
FileDep = Annotated[tuple[File, ProjectAccess], Depends(_file)]


# --- documents ----------------------------------------------------------------------------


@router.post(
    "/projects/{pid}/documents", status_code=status.HTTP_201_CREATED, response_model=DocumentRead
)
async def create_document(
    data: DocumentCreate,
    access: ProjectAccessDep,
    caller: CurrentCaller,
    session: SessionDep,
    cache: RoleCache,
    response: Response,
) -> DocumentRead:
    """A new document at version 1 (members and admins)."""
    return _etag(response, await service.create_document(session, cache, caller, access, data))


@router.get("/projects/{pid}/documents", response_model=Page[DocumentSummary])
async def list_documents(
    access: ProjectAccessDep,
    session: SessionDep,
    params: PageParamsDep,
    channel_id: ChannelFilter = None,
) -> object:
    """The project's documents, newest first, without their text."""
    query = service.list_query(access.project.id, channel_id)
    items, next_cursor = await paginate(session, query, Document.id, params)
    return {"items": items, "next_cursor": next_cursor}


@router.get("/documents/{did}", response_model=DocumentRead)
async def get_document(document: DocumentDep, response: Response) -> DocumentRead:
    """One document with its text; the ETag is its version."""
    return _etag(response, service.document_read(document[0]))


@router.put("/documents/{did}", response_model=DocumentRead)
async def save_document(
    data: DocumentSave,
    document: DocumentDep,
    caller: CurrentCaller,
    session: SessionDep,
    cache: RoleCache,
    response: Response,
    if_match: IfMatch = None,
) -> DocumentRead:
    """Save a new title and text edited from `base_version` (a new version).

    A stale `base_version` is 409 with `details: {current_version, title, content}`:
    nothing is overwritten.
    """
    saved = await service.save_document(
        session, cache, caller, document[1], document[0], data, if_match
    )
    return _etag(response, saved)


@router.delete("/documents/{did}", status_code=NO_CONTENT)
async def delete_document(
    document: DocumentDep, caller: CurrentCaller, session: SessionDep, if_match: IfMatch = None
) -> Response:
    """Delete a document and its history (its creator, or a project admin)."""
    await service.delete_document(session, caller, document[1], document[0], if_match)
    return Response(status_code=NO_CONTENT)


@router.get("/documents/{did}/versions", response_model=Page[DocumentVersionSummary])
async def list_versions(
    document: DocumentDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=12, pattern=r"^\d+$")] = None,
) -> object:
    """The document's versions, newest first."""
    before = int(cursor) if cursor is not None else None
    items, next_cursor = await service.list_versions(session, document[0], before, limit)
    return {"items": items, "next_cursor": next_cursor}


@router.get("/documents/{did}/versions/{n}", response_model=DocumentVersionRead)
async def get_version(
    document: DocumentDep, session: SessionDep, n: VersionNumber
) -> DocumentVersion:
    """One version's title and text."""
    return await service.get_version(session, document[0], n)


@router.post("/documents/{did}/versions/{n}/restore", response_model=DocumentRead)
async def restore_version(
    document: DocumentDep,
    caller: CurrentCaller,
    session: SessionDep,
    response: Response,
    n: VersionNumber,
    if_match: IfMatch = None,
) -> DocumentRead:
    """Make version `n`'s title and text current again, as a new version."""
    restored = await service.restore_version(session, caller, document[1], document[0], n, if_match)
    return _etag(response, restored)


# --- files --------------------------------------------------------------------------------


def content_disposition(filename: str) -> str:
    """An attachment header for ``filename`` (RFC 6266; non-ASCII names as filename*)."""
    quoted = quote(filename)
    if quoted != filename:
        return f"attachment; filename*=utf-8''{quoted}"
    return f'attachment; filename="{filename}"'


@router.post("/projects/{pid}/files", status_code=status.HTTP_201_CREATED, response_model=FileRead)
async def upload_file(
    request: Request,
    file: Annotated[UploadFile, FilePart(description="PDF, plain text or markdown")],
    access: ProjectAccessDep,
    caller: CurrentCaller,
    session: SessionDep,
    cache: RoleCache,
    store: FileStoreDep,
    channel_id: Annotated[uuid.UUID | None, Form(description="Attach to this channel")] = None,
) -> FileRead:
    """Upload a PDF, text or markdown file (multipart field `file`; members and admins).

    The type is checked by content (415), the size against `HUDDLE_MAX_UPLOAD_MB` (413);
    a PDF that cannot be read (corrupt, encrypted) is 422.
    """
    settings: Settings = request.app.state.settings
    max_bytes = settings.max_upload_mb * 1024 * 1024
    data = await file.read(max_bytes + 1)
    return await files.upload(
        session,
        cache,
        store,
        caller,
        access,
        data=data,
        filename=file.filename,
        declared_type=file.content_type,
        channel_id=channel_id,
        max_bytes=max_bytes,
    )


@router.get("/projects/{pid}/files", response_model=Page[FileRead])
async def list_files(
    access: ProjectAccessDep,
    session: SessionDep,
    params: PageParamsDep,
    channel_id: ChannelFilter = None,
) -> object:
    """The project's files, newest first."""
    query = files.list_query(access.project.id, channel_id)
    items, next_cursor = await paginate(session, query, File.id, params)
    return {"items": items, "next_cursor": next_cursor}


@router.get("/files/{fid}", response_model=FileRead)
async def get_file(file: FileDep) -> File:
    """A file's metadata."""
    return file[0]


@router.get(
    "/files/{fid}/download",
    response_class=Response,
    responses={
        200: {
            "description": "The file's bytes, with its original name",
            "content": {
                "application/pdf": {},
                "text/plain": {},
                "text/markdown": {},
            },
        }
    },
)
async def download_file(file: FileDep, store: FileStoreDep) -> Response:
    """The file's bytes, with its original filename and type (as an attachment)."""
    row = file[0]
    try:
        data = await store.read(row.storage_name)
    except FileNotFoundError:
        raise NotFound("The file's contents are missing from storage") from None
    media_type = row.content_type
    if media_type.startswith("text/"):
        charset = "utf-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8"
        media_type += f"; charset={charset}"
    return Response(
        data,
        media_type=media_type,
        headers={
            "Content-Disposition": content_disposition(row.filename),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-cache",
        },
    )


@router.delete("/files/{fid}", status_code=NO_CONTENT)
async def delete_file(
    file: FileDep, caller: CurrentCaller, session: SessionDep, store: FileStoreDep
) -> Response:
    """Delete a file (its uploader, or a project admin)."""
    await files.delete(session, store, caller, file[1], file[0])
    return Response(status_code=NO_CONTENT)
