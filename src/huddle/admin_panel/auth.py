"""Who may use /admin: active superusers, signed in with their Huddle password.

The session is Starlette's signed cookie (``huddle_admin``), scoped to ``/admin``,
HttpOnly, ``SameSite=Strict``, ``Secure`` unless the cookie-secure setting is off, and
valid for :data:`SESSION_MAX_AGE`. Its key is derived from the app's signing key with a
purpose of its own, so it can never be confused with a token. Every request re-reads the
user: one deactivated, demoted, deleted or whose password changed is signed out at once.

Password checks count against the same rate-limit buckets as ``POST /api/auth/token``
(per account and per address), so the panel is not a way around the login limit.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import Any

from sqladmin.authentication import AuthenticationBackend
from sqladmin.templating import Jinja2Templates
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import Response

from huddle.auth.models import User
from huddle.auth.service import (
    AuthRuntime,
    count_login_attempt,
    get_user_by_login,
    login_succeeded,
)
from huddle.core.errors import RateLimited

SESSION_COOKIE = "huddle_admin"
SESSION_MAX_AGE = 8 * 3600
_PURPOSE = b"huddle.admin-panel.session.v1"
_USER_KEY = "huddle_admin_user"
_STAMP_KEY = "huddle_admin_stamp"


def derive_session_secret(signing_key: str) -> str:
    """The session-signing key: an HMAC of the app's key with the panel's purpose."""
    return hmac.new(signing_key.encode(), _PURPOSE, hashlib.sha256).hexdigest()


class SuperuserAuth(AuthenticationBackend):
    """SQLAdmin's authentication backend for Huddle (see the module docstring)."""

    def __init__(self, state: State, signing_key: str, *, https_only: bool, base_url: str) -> None:
        self._secret = derive_session_secret(signing_key)
        super().__init__(
            secret_key=self._secret,
            session_cookie=SESSION_COOKIE,
            max_age=SESSION_MAX_AGE,
            path=base_url,
            same_site="strict",
            https_only=https_only,
        )
        self._state = state
        self.templates: Jinja2Templates | None = None  # set once the Admin exists

    def _stamp(self, user: User) -> str:
        """Ties a session to the password it was opened with (a change ends it)."""
        material = f"{user.id}:{user.hashed_password or ''}".encode()
        return hmac.new(self._secret.encode(), material, hashlib.sha256).hexdigest()[:32]

    async def login(self, request: Request) -> Response | bool:
        form = await request.form()
        login_name = str(form.get("username", ""))[:320]
        password = str(form.get("password", ""))[:1024]
        request.session.clear()
        if not login_name or not password:
            return False
        runtime: AuthRuntime = self._state.auth
        address = request.client.host if request.client else "unknown"
        async with self._state.db.read_session() as lookup:
            found = await get_user_by_login(lookup, login_name)
        try:
            attempt = await count_login_attempt(
                runtime, found.id if found else None, login_name, address
            )
        except RateLimited as exc:
            return await self._refused(request, exc.message, int(exc.headers["Retry-After"]))
        ok, _ = await runtime.hasher.verify(password, found.hashed_password if found else None)
        if found is None or not ok or not found.is_active or not found.is_superuser:
            # Counted as a failure even with the right password: the panel is only for
            # active superusers, and the answer does not say which check failed.
            return False
        await login_succeeded(runtime, attempt)
        request.session[_USER_KEY] = str(found.id)
        request.session[_STAMP_KEY] = self._stamp(found)
        return True

    async def _refused(self, request: Request, message: str, wait: int) -> Response:
        if self.templates is None:
            return Response(message, status_code=429, headers={"Retry-After": str(wait)})
        response = await self.templates.TemplateResponse(
            request, "sqladmin/login.html", {"error": message}, status_code=429
        )
        response.headers["Retry-After"] = str(wait)
        return response

    async def logout(self, request: Request) -> Response | bool:
        request.session.clear()
        return False  # back to the login page

    async def current_user(self, request: Request) -> User | None:
        """The session's user if still an active superuser with the same password."""
        raw = request.session.get(_USER_KEY)
        if not isinstance(raw, str):
            return None
        try:
            user_id = uuid.UUID(raw)
        except ValueError:
            return None
        async with self._state.db.read_session() as session:
            user = await session.get(User, user_id)
        if user is None or not user.is_active or not user.is_superuser:
            return None
        if not hmac.compare_digest(self._stamp(user), str(request.session.get(_STAMP_KEY))):
            return None
        return user

    async def authenticate(self, request: Request) -> Response | bool:
        user = await self.current_user(request)
        if user is None:
            request.session.clear()
            return False
        request.state.admin_user_id = user.id
        return True

    async def get_user_id(self, request: Request) -> Any:
        return getattr(request.state, "admin_user_id", None)
