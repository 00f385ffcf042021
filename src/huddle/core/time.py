"""Time helpers: every timestamp Huddle stores or returns is timezone-aware UTC."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
