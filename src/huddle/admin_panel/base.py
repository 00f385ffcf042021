"""The read-only base view every admin-panel view derives from."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, ClassVar

from sqladmin import ModelView
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from huddle.admin_panel.redaction import hidden_keys

Names = list[str]


class PanelView(ModelView):
    """Read-only by default: no create, edit, delete, import or export. Changes go through
    actions that call the same services as the API.

    Whatever a subclass lists, secret columns (see :mod:`huddle.admin_panel.redaction`)
    are removed from the list, details, form, export and import columns here.
    """

    can_create = False
    can_edit = False
    can_delete = False
    can_export = False
    can_import = False
    can_view_details = True
    page_size = 25
    page_size_options: ClassVar[Sequence[int]] = [25, 50, 100]
    #: The Huddle app's state (db, auth runtime…), bound per app by ``bind_views``.
    app_state: ClassVar[State]

    def __init__(self) -> None:
        super().__init__()
        hidden = hidden_keys(self._mapper)
        # Searching or sorting by a secret would leak it a character at a time.
        self._search_fields = [f for f in self._search_fields if f.split(".")[-1] not in hidden]
        self._sort_fields = [f for f in self._sort_fields if f not in hidden]

    def _redact(self, names: Names) -> Names:
        hidden = hidden_keys(self._mapper)
        return [name for name in names if name not in hidden]

    def get_list_columns(self) -> Names:
        return self._redact(super().get_list_columns())

    def get_details_columns(self) -> Names:
        return self._redact(super().get_details_columns())

    def get_form_columns(self) -> Names:
        return self._redact(super().get_form_columns())

    def get_export_columns(self) -> Names:
        return self._redact(super().get_export_columns())

    def get_import_columns(self) -> Names:
        return self._redact(super().get_import_columns())

    # --- helpers for actions ------------------------------------------------------------

    @staticmethod
    def selected_ids(request: Request) -> list[uuid.UUID]:
        """The ``pks`` the action was invoked with (invalid ones are ignored)."""
        ids = []
        for raw in request.query_params.get("pks", "").split(","):
            try:
                ids.append(uuid.UUID(raw.strip()))
            except ValueError:
                continue
        return ids

    def back_to_list(self, request: Request) -> Response:
        return RedirectResponse(request.url_for("admin:list", identity=self.identity), 302)

    @staticmethod
    def acting_user_id(request: Request) -> Any:
        return getattr(request.state, "admin_user_id", None)
