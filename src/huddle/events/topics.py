"""Topic names (DESIGN.md §7). The emitter picks the topic; readers are checked per topic."""

from __future__ import annotations

import uuid


def workspace(workspace_id: uuid.UUID) -> str:
    return f"workspace:{workspace_id}"


def workspace_admin(workspace_id: uuid.UUID) -> str:
    return f"workspace:{workspace_id}:admin"


def project(project_id: uuid.UUID) -> str:
    return f"project:{project_id}"


def channel(channel_id: uuid.UUID) -> str:
    return f"channel:{channel_id}"


def user(user_id: uuid.UUID) -> str:
    return f"user:{user_id}"


def parse(topic: str) -> tuple[str, uuid.UUID] | None:
    """Split a topic: ``project:<id>`` → ``("project", id)``.

    ``workspace:<id>:admin`` → ``("workspace_admin", id)``; None for anything else.
    """
    parts = topic.split(":")
    try:
        if len(parts) == 2 and parts[0] in ("workspace", "project", "user", "channel"):
            return parts[0], uuid.UUID(parts[1])
        if len(parts) == 3 and parts[0] == "workspace" and parts[2] == "admin":
            return "workspace_admin", uuid.UUID(parts[1])
    except ValueError:
        return None
    return None
