"""Imports every domain's models so Alembic and the tests see one metadata."""

from huddle.auth import models as auth_models  # noqa: F401
from huddle.core.models import Base

metadata = Base.metadata
