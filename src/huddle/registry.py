"""Imports every domain's models so Alembic and the tests see one metadata."""

from huddle.ai import models as ai_models  # noqa: F401
from huddle.auth import models as auth_models  # noqa: F401
from huddle.automation import models as automation_models  # noqa: F401
from huddle.chat import models as chat_models  # noqa: F401
from huddle.clients import models as client_models  # noqa: F401
from huddle.core import idempotency_models, state_models  # noqa: F401
from huddle.core.models import Base
from huddle.documents import models as document_models  # noqa: F401
from huddle.events import models as event_models  # noqa: F401
from huddle.projects import models as project_models  # noqa: F401
from huddle.search import models as search_models  # noqa: F401
from huddle.tasks import models as task_models  # noqa: F401
from huddle.workspaces import models as workspace_models  # noqa: F401

metadata = Base.metadata
