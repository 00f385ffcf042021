"""Roles and their order: viewer < member < admin (DESIGN.md §4 capability table)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    viewer = "viewer"
    member = "member"
    admin = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def at_least(self, other: Role) -> bool:
        return self.rank >= other.rank


_RANK = {Role.viewer: 1, Role.member: 2, Role.admin: 3}


def highest(*roles: Role | None) -> Role | None:
    present = [r for r in roles if r is not None]
    return max(present, key=lambda r: r.rank) if present else None
