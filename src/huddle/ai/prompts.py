"""Saved prompt templates: a user's own, or shared with a workspace by its admins.

A personal prompt is read and changed by its owner only. A shared prompt belongs to its
workspace: every member reads it, and only the workspace's current admins share, change,
unshare or delete it (its author included only while an admin).
"""

from __future__ import annotations

import uuid

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from huddle.access.roles import Role
from huddle.access.service import workspace_access
from huddle.ai.models import Prompt
from huddle.ai.schemas import PromptCreate, PromptUpdate
from huddle.core.cache import ScopedCache
from huddle.core.errors import Forbidden, NotFound, ValidationFailed
from huddle.core.pagination import PageParams, paginate
from huddle.core.time import utcnow
from huddle.workspaces.models import Membership


async def _role(
    session: AsyncSession, cache: ScopedCache, user_id: uuid.UUID, workspace_id: uuid.UUID
) -> Role | None:
    try:
        return (await workspace_access(session, cache, user_id, workspace_id)).role
    except NotFound:
        return None


async def readable_prompt(
    session: AsyncSession, cache: ScopedCache, user_id: uuid.UUID, prompt_id: uuid.UUID
) -> Prompt:
    prompt = await session.get(Prompt, prompt_id)
    if prompt is None:
        raise NotFound("Prompt not found")
    if prompt.owner_id == user_id:
        return prompt
    if (
        prompt.shared
        and prompt.workspace_id is not None
        and await _role(session, cache, user_id, prompt.workspace_id) is not None
    ):
        return prompt
    raise NotFound("Prompt not found")


async def _writable(
    session: AsyncSession, cache: ScopedCache, user_id: uuid.UUID, prompt_id: uuid.UUID
) -> Prompt:
    """A personal prompt: its owner. A shared one belongs to the workspace: its *current*
    admins only — an owner who was demoted or left no longer changes what every member
    may use as a system prompt."""
    prompt = await readable_prompt(session, cache, user_id, prompt_id)
    if prompt.shared:
        assert prompt.workspace_id is not None
        role = await _role(session, cache, user_id, prompt.workspace_id)
        if role is None and prompt.owner_id == user_id:
            raise NotFound("Prompt not found")  # no longer in its workspace
        if role is None or not role.at_least(Role.admin):
            raise Forbidden("Only the workspace's admins change a shared prompt")
    return prompt


async def _check_share(
    session: AsyncSession, cache: ScopedCache, user_id: uuid.UUID, workspace_id: uuid.UUID | None
) -> None:
    if workspace_id is None:
        raise ValidationFailed(
            "A shared prompt needs a workspace_id",
            details=[{"loc": ["body", "workspace_id"], "msg": "required to share"}],
        )
    role = (await workspace_access(session, cache, user_id, workspace_id)).role
    if not role.at_least(Role.admin):
        raise Forbidden("Only workspace admins can share prompts")


async def create_prompt(
    session: AsyncSession, cache: ScopedCache, user_id: uuid.UUID, data: PromptCreate
) -> Prompt:
    if data.shared:
        await _check_share(session, cache, user_id, data.workspace_id)
    elif data.workspace_id is not None:
        await workspace_access(session, cache, user_id, data.workspace_id)
    prompt = Prompt(
        owner_id=user_id,
        workspace_id=data.workspace_id,
        shared=data.shared,
        name=data.name,
        content=data.content,
    )
    session.add(prompt)
    await session.flush()
    return prompt


async def list_prompts(
    session: AsyncSession,
    user_id: uuid.UUID,
    workspace_id: uuid.UUID | None,
    page: PageParams,
) -> tuple[list[Prompt], str | None]:
    """Your prompts and the prompts shared in your workspaces (or in one of them)."""
    mine = select(Membership.workspace_id).where(Membership.user_id == user_id)
    query = select(Prompt).where(
        or_(
            Prompt.owner_id == user_id,
            and_(Prompt.shared.is_(True), Prompt.workspace_id.in_(mine)),
        )
    )
    if workspace_id is not None:
        query = query.where(Prompt.workspace_id == workspace_id)
    return await paginate(session, query, Prompt.id, page, newest_first=False)


async def update_prompt(
    session: AsyncSession,
    cache: ScopedCache,
    user_id: uuid.UUID,
    prompt_id: uuid.UUID,
    data: PromptUpdate,
) -> Prompt:
    prompt = await _writable(session, cache, user_id, prompt_id)
    if data.shared:
        await _check_share(session, cache, user_id, prompt.workspace_id)
    for field in ("name", "content", "shared"):
        value = getattr(data, field)
        if value is not None:
            setattr(prompt, field, value)
    prompt.updated_at = utcnow()
    await session.flush()
    return prompt


async def delete_prompt(
    session: AsyncSession, cache: ScopedCache, user_id: uuid.UUID, prompt_id: uuid.UUID
) -> None:
    prompt = await _writable(session, cache, user_id, prompt_id)
    await session.delete(prompt)
