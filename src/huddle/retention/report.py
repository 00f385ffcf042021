"""What a retention pass did: counts per kind, per workspace, and how a step is run."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime

from huddle.core.db import Database


@dataclass
class Counts:
    """Rows deleted (or, for ``tombstones`` and ``read_markers``, changed) per kind."""

    messages: int = 0
    tombstones: int = 0  # expired thread roots emptied while newer replies remain
    reactions: int = 0
    mentions: int = 0
    read_markers: int = 0  # moved back off a deleted message
    chunks: int = 0
    events: int = 0
    webhook_deliveries: int = 0
    files: int = 0
    invitations: int = 0
    refresh_tokens: int = 0

    def add(self, other: Counts) -> None:
        for kind in fields(self):
            setattr(self, kind.name, getattr(self, kind.name) + getattr(other, kind.name))

    def as_dict(self) -> dict[str, int]:
        return {kind.name: getattr(self, kind.name) for kind in fields(self)}

    def __bool__(self) -> bool:
        return any(self.as_dict().values())

    def describe(self) -> str:
        """``messages=3 events=7`` (the kinds that are not zero), or ``nothing``."""
        done = [f"{kind}={count}" for kind, count in self.as_dict().items() if count]
        return " ".join(done) or "nothing"


@dataclass
class RetentionReport:
    started_at: datetime
    skipped: bool = False  # another runner held the lock: this pass did nothing
    interrupted: bool = False  # stopped between two steps (shutdown); the next pass goes on
    #: Effective limit in days of each workspace that has one.
    limits: dict[uuid.UUID, int] = field(default_factory=dict)
    #: What went, per workspace (only workspaces where something did).
    workspaces: dict[uuid.UUID, Counts] = field(default_factory=dict)
    #: What belongs to no workspace: events without one, invitations, refresh tokens.
    site: Counts = field(default_factory=Counts)

    @property
    def totals(self) -> Counts:
        total = Counts()
        total.add(self.site)
        for counts in self.workspaces.values():
            total.add(counts)
        return total


@dataclass
class Step:
    """What every purge needs: where, how many rows per transaction, and "now"."""

    db: Database
    batch: int
    now: datetime
    stopping: Callable[[], bool] = lambda: False


@dataclass(frozen=True)
class Scope:
    """One workspace and its cut-off: rows created before ``cutoff`` are past the limit."""

    workspace_id: uuid.UUID
    cutoff: datetime
