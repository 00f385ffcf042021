"""Projects and the grants that give users or teams a role on one."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from huddle.access.roles import Role
from huddle.core.models import Base, CreatedAtMixin, IdMixin
from huddle.core.time import utcnow
from huddle.workspaces.models import RoleColumn


class Project(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "projects"
    __table_args__ = (
        Index("ix_projects_workspace_id", "workspace_id"),
        Index("ix_projects_client_id", "client_id"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    # Who the project is for (optional); a client with live projects cannot be deleted.
    client_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("clients.id"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    is_private: Mapped[bool] = mapped_column(default=False)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    archived_at: Mapped[datetime | None]
    # Soft delete, like workspaces: hidden at once, history kept for those who could see it.
    deleted_at: Mapped[datetime | None]


class ProjectPermission(IdMixin, CreatedAtMixin, Base):
    """A role on one project for one user or one team (exactly one of the two)."""

    __tablename__ = "project_permissions"
    __table_args__ = (
        UniqueConstraint("project_id", "user_id"),
        UniqueConstraint("project_id", "team_id"),
        CheckConstraint("(user_id IS NULL) != (team_id IS NULL)", name="user_xor_team"),
    )

    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    team_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[Role] = mapped_column(RoleColumn)
