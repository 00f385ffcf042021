"""Small named values the server keeps about itself (encryption key check, job progress)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from huddle.core.models import Base
from huddle.core.time import utcnow


class SystemState(Base):
    """One named value: ``encryption.key_check``, ``encryption.rotate:<table>``, …"""

    __tablename__ = "system_state"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
