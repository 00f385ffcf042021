"""FastAPI dependencies resolving the caller's access to the resource in the path."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from huddle.access.service import ProjectAccess, WorkspaceAccess, project_access, workspace_access
from huddle.auth.deps import CurrentUser
from huddle.auth.models import User
from huddle.core.cache import ScopedCache
from huddle.core.db import SessionDep
from huddle.events.schemas import Actor


def get_role_cache(request: Request) -> ScopedCache:
    cache: ScopedCache = request.app.state.role_cache
    return cache


RoleCache = Annotated[ScopedCache, Depends(get_role_cache)]


@dataclass(frozen=True)
class Caller:
    """The user a request acts for, and the actor its events record."""

    user: User
    actor: Actor

    @property
    def id(self) -> uuid.UUID:
        return self.user.id

    @classmethod
    def acting_as(cls, user: User) -> Caller:
        """The user acting for themself."""
        return cls(user=user, actor=Actor.user(user.id))


def get_caller(user: CurrentUser) -> Caller:
    return Caller.acting_as(user)


CurrentCaller = Annotated[Caller, Depends(get_caller)]


async def get_workspace_access(
    wid: uuid.UUID, caller: CurrentCaller, session: SessionDep, cache: RoleCache
) -> WorkspaceAccess:
    return await workspace_access(session, cache, caller.id, wid)


async def get_project_access(
    pid: uuid.UUID, caller: CurrentCaller, session: SessionDep, cache: RoleCache
) -> ProjectAccess:
    return await project_access(session, cache, caller.id, pid)


WorkspaceAccessDep = Annotated[WorkspaceAccess, Depends(get_workspace_access)]
ProjectAccessDep = Annotated[ProjectAccess, Depends(get_project_access)]
