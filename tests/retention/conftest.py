"""Fixtures of the retention tests: a database handle and a fixed "now"."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from huddle.config import Settings
from huddle.core.db import Database

#: The "now" of the passes these tests run (run_pass takes it; the clock is not needed).
NOW = datetime(2030, 1, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings)
    yield database
    await database.dispose()
