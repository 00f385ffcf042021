"""``mount_admin_panel(app, settings)``: SQLAdmin at /admin over every Huddle model."""

from __future__ import annotations

import types
from typing import Any

from fastapi import FastAPI
from sqladmin import Admin
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapper
from starlette.datastructures import State
from starlette.middleware import Middleware

import huddle.registry  # noqa: F401 - every model mapped before the views are built
from huddle.admin_panel.auth import SuperuserAuth
from huddle.admin_panel.base import PanelView
from huddle.admin_panel.guard import SameOriginGuard
from huddle.admin_panel.redaction import visible_keys
from huddle.admin_panel.views import CURATED
from huddle.config import Settings
from huddle.core.models import Base

BASE_URL = "/admin"
_LIST_COLUMNS = 8


class LazySessionMaker:
    """A session factory for SQLAdmin that opens read sessions on the app's database.

    The database is created in the app's lifespan, after SQLAdmin is constructed, so it
    is looked up on ``state.db`` at each call. SQLAdmin calls ``configure(...)`` once
    and then ``async with session_maker(**kw) as session``; ``class_`` tells it the
    sessions are async. Views are read-only, so read sessions suffice (on SQLite they
    do not take the write lock); actions open their own unit of work.
    """

    class_ = AsyncSession

    def __init__(self, state: State) -> None:
        self._state = state
        self._options: dict[str, Any] = {}

    def configure(self, **options: Any) -> None:
        self._options.update(options)

    def __call__(self, **options: Any) -> AsyncSession:
        return self._state.db.read_session(**{**self._options, **options})


def _category(mapper: Mapper[Any]) -> str:
    domain = mapper.class_.__module__.split(".")[1]
    return {"core": "System", "ai": "AI"}.get(domain, domain.title())


def _generated_view(mapper: Mapper[Any]) -> type[PanelView]:
    """A read-only view of a model without a curated one: its first visible columns."""
    keys = sorted(visible_keys(mapper), key=lambda key: key != "id")  # the id first
    body: dict[str, object] = {
        "column_list": keys[:_LIST_COLUMNS],
        "column_details_list": keys,
        "category": _category(mapper),
        "icon": "fa-solid fa-table",
    }
    if "created_at" in keys:
        body["column_default_sort"] = ("created_at", True)
    name = f"{mapper.class_.__name__}View"
    return types.new_class(name, (PanelView,), {"model": mapper.class_}, lambda ns: ns.update(body))


def view_classes() -> list[type[PanelView]]:
    """One view per mapped model: the curated ones, then generated ones for the rest."""
    curated = {view.model for view in CURATED}
    mappers = sorted(Base.registry.mappers, key=lambda m: m.class_.__name__)
    generated = [_generated_view(m) for m in mappers if m.class_ not in curated]
    return [*CURATED, *generated]


def _bind(view: type[PanelView], state: State) -> type[PanelView]:
    """A subclass of ``view`` for one app (SQLAdmin sets per-app attributes on it)."""
    return type(view.__name__, (view,), {"app_state": state})


def mount_admin_panel(
    app: FastAPI, settings: Settings, *, cookie_secure: bool | None = None
) -> Admin:
    """Mount the SQLAdmin panel at /admin (active superusers only).

    ``cookie_secure`` overrides ``HUDDLE_COOKIE_SECURE`` for the session cookie's Secure
    flag.
    """
    if cookie_secure is None:
        cookie_secure = settings.cookie_secure
    auth = SuperuserAuth(
        app.state, settings.signing_key, https_only=cookie_secure, base_url=BASE_URL
    )
    admin = Admin(
        app,
        session_maker=LazySessionMaker(app.state),  # type: ignore[arg-type]
        base_url=BASE_URL,
        title="Huddle admin",
        authentication_backend=auth,
        middlewares=[Middleware(SameOriginGuard)],
    )
    auth.templates = admin.templates
    for view in view_classes():
        admin.add_view(_bind(view, app.state))
    app.state.admin_panel = admin
    return admin
