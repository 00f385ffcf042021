"""Identifiers: UUIDv7 primary keys (time-ordered, good B-tree locality)."""

import uuid

import uuid6


def new_id() -> uuid.UUID:
    """A new UUIDv7 as a plain :class:`uuid.UUID`."""
    return uuid.UUID(int=uuid6.uuid7().int)
