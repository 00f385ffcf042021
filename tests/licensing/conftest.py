"""Fixtures for licensing tests: the test vendor key, and a movable clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from huddle.core.time import utcnow
from huddle.licensing import service
from tests.licensing.keys import TEST_PUBLIC_PEM


@pytest.fixture
def vendor_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """The server trusts the test key instead of the vendor's for this test."""
    monkeypatch.setattr(service, "VENDOR_PUBLIC_KEY_PEM", TEST_PUBLIC_PEM)
    return TEST_PUBLIC_PEM


@pytest.fixture
def advance_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[timedelta], datetime]:
    """``advance_clock(delta)``: the licensing code's "now" moves ``delta`` ahead of the
    real time (a license's dates are checked against it on every request)."""

    def advance(delta: timedelta) -> datetime:
        moment = utcnow() + delta
        monkeypatch.setattr(service, "utcnow", lambda: utcnow() + delta)
        return moment

    return advance
