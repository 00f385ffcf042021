"""Clients of a workspace: members read them, admins write them (``client.*`` events)."""

from __future__ import annotations

import uuid

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from huddle.access.deps import Caller
from huddle.access.roles import Role
from huddle.access.service import WorkspaceAccess
from huddle.clients.models import Client, ClientStatus
from huddle.clients.schemas import ClientCreate, ClientRead, ClientUpdate
from huddle.core.errors import Conflict, NotFound, ValidationFailed
from huddle.core.pagination import PageParams, paginate
from huddle.core.time import utcnow
from huddle.events import topics
from huddle.events.service import record
from huddle.projects.models import Project

MAX_LISTED_PROJECTS = 50  # in a refused delete's details


def _unique(emails: list[str]) -> list[str]:
    return list(dict.fromkeys(emails))


async def _record(session: AsyncSession, caller: Caller, type: str, client: Client) -> None:
    await record(
        session,
        type,
        topic=topics.workspace(client.workspace_id),
        actor=caller.actor,
        data=ClientRead.model_validate(client),
        workspace_id=client.workspace_id,
        subject_id=client.id,
    )


async def _flush_name(session: AsyncSession) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(
            "A client with that name already exists in this workspace",
            details={"field": "name"},
        ) from exc


async def _name_free(
    session: AsyncSession, workspace_id: uuid.UUID, name: str, keep: uuid.UUID | None = None
) -> None:
    taken = await session.scalar(
        select(Client.id).where(Client.workspace_id == workspace_id, Client.name == name)
    )
    if taken is not None and taken != keep:
        raise Conflict(
            "A client with that name already exists in this workspace",
            details={"field": "name"},
        )


async def get_client(
    session: AsyncSession, access: WorkspaceAccess, client_id: uuid.UUID
) -> Client:
    """A client of the caller's workspace; 404 for any other id."""
    client = await session.get(Client, client_id)
    if client is None or client.workspace_id != access.workspace.id:
        raise NotFound("Client not found")
    return client


async def client_in_workspace(
    session: AsyncSession, workspace_id: uuid.UUID, client_id: uuid.UUID, field: str
) -> None:
    """422 unless ``client_id`` is a client of this workspace (linking a project)."""
    found = await session.scalar(
        select(Client.id).where(Client.id == client_id, Client.workspace_id == workspace_id)
    )
    if found is None:
        raise ValidationFailed(
            "No such client in this workspace",
            details=[{"loc": ["body", field], "msg": "not a client of this workspace"}],
        )


async def create_client(
    session: AsyncSession, caller: Caller, access: WorkspaceAccess, data: ClientCreate
) -> Client:
    access.require(Role.admin, "Only workspace admins manage clients")
    await _name_free(session, access.workspace.id, data.name)
    client = Client(
        workspace_id=access.workspace.id,
        name=data.name,
        contact_emails=_unique(list(data.contact_emails)),
        notes=data.notes,
        status=data.status,
        created_by=caller.id,
    )
    session.add(client)
    await _flush_name(session)
    await _record(session, caller, "client.created", client)
    return client


async def list_clients(
    session: AsyncSession,
    access: WorkspaceAccess,
    page: PageParams,
    status: ClientStatus | None,
) -> tuple[list[Client], str | None]:
    query = select(Client).where(Client.workspace_id == access.workspace.id)
    if status is not None:
        query = query.where(Client.status == status)
    return await paginate(session, query, Client.id, page, newest_first=False)


async def update_client(
    session: AsyncSession,
    caller: Caller,
    access: WorkspaceAccess,
    client: Client,
    data: ClientUpdate,
) -> Client:
    access.require(Role.admin, "Only workspace admins manage clients")
    before = (client.name, list(client.contact_emails), client.notes, client.status)
    if data.name is not None and data.name != client.name:
        await _name_free(session, client.workspace_id, data.name, keep=client.id)
        client.name = data.name
    if data.contact_emails is not None:
        client.contact_emails = _unique(list(data.contact_emails))
    if data.notes is not None:
        client.notes = data.notes
    if data.status is not None:
        client.status = data.status
    if (client.name, list(client.contact_emails), client.notes, client.status) != before:
        client.updated_at = utcnow()
        await _flush_name(session)
        await _record(session, caller, "client.updated", client)
    return client


async def delete_client(
    session: AsyncSession, caller: Caller, access: WorkspaceAccess, client: Client
) -> None:
    """Delete a client: refused (409) while live projects belong to it. Deleted projects
    keep their history but lose the link."""
    access.require(Role.admin, "Only workspace admins manage clients")
    linked = (
        await session.scalars(
            select(Project.id)
            .where(Project.client_id == client.id, Project.deleted_at.is_(None))
            .order_by(Project.id)
            .limit(MAX_LISTED_PROJECTS + 1)
        )
    ).all()
    if linked:
        raise Conflict(
            "Projects still belong to this client: move them to another client or unlink "
            "them (PATCH /api/projects/{pid} with client_id) first",
            details={"project_ids": [str(pid) for pid in linked[:MAX_LISTED_PROJECTS]]},
        )
    await session.execute(
        update(Project)
        .where(Project.client_id == client.id)
        .values(client_id=None)
        .execution_options(synchronize_session=False)
    )
    await _record(session, caller, "client.deleted", client)
    await session.delete(client)
    await session.flush()
