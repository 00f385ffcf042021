"""Invitations: an admin invites an email; whoever signs in with that email accepts once."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from huddle.access.deps import Caller
from huddle.access.roles import Role
from huddle.access.service import WorkspaceAccess
from huddle.auth.models import User
from huddle.config import Settings
from huddle.core.background import BackgroundRunner
from huddle.core.cache import ScopedCache
from huddle.core.db import after_commit
from huddle.core.errors import Conflict, Forbidden, Gone, NotFound
from huddle.core.mail import Mail, MailBackend
from huddle.core.pagination import PageParams, paginate
from huddle.core.time import utcnow
from huddle.core.tokens import hash_secret, new_secret
from huddle.events import topics
from huddle.events.service import record
from huddle.workspaces.models import Invitation, Membership, Workspace
from huddle.workspaces.schemas import (
    InvitationCreate,
    InvitationCreated,
    InvitationRead,
    MemberRead,
)
from huddle.workspaces.service import join


@dataclass
class Mailer:
    """Sends mail after commit, in the background (a slow SMTP server never slows a request)."""

    backend: MailBackend
    runner: BackgroundRunner
    settings: Settings

    def send_after_commit(self, session: AsyncSession, mail: Mail) -> None:
        async def spawn() -> None:
            self.runner.spawn(self.backend.send(mail), name=f"mail to {mail.to}")

        after_commit(session, spawn)


async def _record(session: AsyncSession, caller: Caller, type: str, invitation: Invitation) -> None:
    await record(
        session,
        type,
        topic=topics.workspace_admin(invitation.workspace_id),
        actor=caller.actor,
        data=InvitationRead.model_validate(invitation),
        workspace_id=invitation.workspace_id,
        subject_id=invitation.id,
    )


def accept_link(settings: Settings, token: str) -> str:
    return f"{settings.public_url.rstrip('/')}/invitations/accept?token={token}"


async def create_invitation(
    session: AsyncSession,
    caller: Caller,
    access: WorkspaceAccess,
    data: InvitationCreate,
    mailer: Mailer,
) -> InvitationCreated:
    """Invite an email (admins only); the accept link is mailed after commit."""
    access.require(Role.admin)
    workspace = access.workspace
    already = await session.scalar(
        select(Membership.id)
        .join(User, User.id == Membership.user_id)
        .where(Membership.workspace_id == workspace.id, User.email == data.email)
    )
    if already is not None:
        raise Conflict("That person is already a member")
    token = new_secret()
    invitation = Invitation(
        workspace_id=workspace.id,
        email=data.email,
        role=data.role,
        token_hash=hash_secret(token),
        invited_by=caller.id,
        expires_at=utcnow() + timedelta(days=mailer.settings.invitation_ttl_days),
    )
    session.add(invitation)
    await session.flush()
    await _record(session, caller, "invitation.created", invitation)
    inviter = caller.user.full_name or caller.user.username
    mailer.send_after_commit(
        session,
        Mail(
            to=data.email,
            subject=f"{inviter} invited you to {workspace.name} on Huddle",
            body=(
                f'{inviter} invited you to join the workspace "{workspace.name}" as '
                f"{data.role.value}.\n\nAccept the invitation:\n"
                f"{accept_link(mailer.settings, token)}\n\n"
                f"The link works once and expires on {invitation.expires_at:%Y-%m-%d %H:%M} UTC."
            ),
        ),
    )
    return InvitationCreated(**InvitationRead.model_validate(invitation).model_dump(), token=token)


async def list_invitations(
    session: AsyncSession, access: WorkspaceAccess, page: PageParams, pending_only: bool
) -> tuple[list[Invitation], str | None]:
    access.require(Role.admin)
    query = select(Invitation).where(Invitation.workspace_id == access.workspace.id)
    if pending_only:
        query = query.where(
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
            Invitation.expires_at > utcnow(),
        )
    return await paginate(session, query, Invitation.id, page)


async def revoke_invitation(
    session: AsyncSession, caller: Caller, access: WorkspaceAccess, invitation_id: uuid.UUID
) -> None:
    access.require(Role.admin)
    invitation = await session.scalar(
        select(Invitation)
        .where(Invitation.id == invitation_id, Invitation.workspace_id == access.workspace.id)
        .with_for_update()  # serialises with a concurrent accept
    )
    if invitation is None:
        raise NotFound("Invitation not found")
    if invitation.accepted_at is not None:
        raise Conflict("This invitation was already accepted")
    if invitation.revoked_at is not None:
        return
    invitation.revoked_at = utcnow()
    await session.flush()
    await _record(session, caller, "invitation.revoked", invitation)


@dataclass
class Accepted:
    workspace: Workspace
    member: MemberRead


async def accept_invitation(
    session: AsyncSession, cache: ScopedCache, caller: Caller, token: str
) -> Accepted:
    """Accept once, as a signed-in user whose email is the invited one.

    404 unknown token; 410 revoked, expired or already used; 403 another email;
    409 already a member.
    """
    invitation = await session.scalar(
        select(Invitation).where(Invitation.token_hash == hash_secret(token)).with_for_update()
    )
    if invitation is None:
        raise NotFound("Invitation not found")
    workspace = await session.get(Workspace, invitation.workspace_id)
    if workspace is None or workspace.deleted_at is not None:
        raise Gone("This workspace no longer exists")
    if invitation.revoked_at is not None:
        raise Gone("This invitation was revoked")
    if invitation.accepted_at is not None:
        raise Gone("This invitation was already used")
    if invitation.expires_at <= utcnow():
        raise Gone("This invitation has expired")
    if caller.user.email != invitation.email:
        raise Forbidden("This invitation is for another email address")
    member = await join(session, cache, caller, workspace.id, caller.user, invitation.role)
    invitation.accepted_at = utcnow()
    invitation.accepted_by = caller.id
    await session.flush()
    await _record(session, caller, "invitation.accepted", invitation)
    return Accepted(workspace=workspace, member=member)
