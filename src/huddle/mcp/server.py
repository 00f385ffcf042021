"""The MCP server (official ``mcp`` SDK, ``MCPServer`` over streamable HTTP) at ``/mcp``.

Outside agents get the assistant's own tools (:mod:`huddle.ai.tools`), run by the same
:func:`~huddle.ai.tools.run_tool`: as the user behind the ``Authorization: Bearer``
token (an access JWT or a personal API token; 401 without), with that user's rights,
and every event they write records ``actor = {kind: "agent", on_behalf_of: <user>,
tool_call_id: <the JSON-RPC request id>}``. ``delete_task`` returns a pending action,
confirmed with the ``confirm_action`` tool or ``POST /api/ai/actions/{id}/confirm``.

The workspace the tools act in comes from the request, never from the model: the
``workspace_id`` query parameter or ``Huddle-Workspace`` header (checked against the
user's memberships: 404 otherwise), else the user's only workspace.

Resources (templates): ``huddle://projects/{project_id}`` (with its columns),
``huddle://projects/{project_id}/tasks`` and ``huddle://tasks/{task_id}``; the list of
projects comes from ``list_projects``.

The transport is stateless (each POST stands alone), so any instance behind a load
balancer can answer. The SDK's DNS-rebinding Host check is off: requests carry a Bearer
token, never ambient credentials, and Huddle runs under whatever host name it is given.
"""

from __future__ import annotations

import inspect
import json
import logging
import uuid
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any
from urllib.parse import parse_qs

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import Field
from starlette.datastructures import State
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from huddle import __version__
from huddle.access.service import workspace_access
from huddle.ai import service as ai_service
from huddle.ai.tools import RESOURCES, TOOLS, Tool, ToolScope, run_tool
from huddle.auth.deps import user_outside_transaction
from huddle.core.errors import AppError, NotAuthenticated, NotFound

READS = {**TOOLS, **RESOURCES}
_USER = "huddle.user_id"
_WORKSPACE = "huddle.workspace_id"

INSTRUCTIONS = (
    "Huddle's task tools, acting as the user whose token you hold and with that user's "
    "rights, in one workspace. Look ids up with list_projects and list_tasks; delete_task "
    "only proposes a deletion, which the user (or confirm_action) confirms."
)


def _scope(ctx: Context[Any, Any], state: State) -> ToolScope:
    request = ctx.request_context.request
    scope = getattr(request, "scope", {})
    return ToolScope(state, scope[_USER], scope.get(_WORKSPACE))


def _signature(tool: Tool) -> inspect.Signature:
    """The tool's arguments as a function signature, so the SDK publishes the same
    schema (types, limits, descriptions) as the agent's tools have."""
    params = [inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context)]
    for name, field in tool.args.model_fields.items():
        annotation: Any = Annotated[
            (field.annotation, *field.metadata, Field(description=field.description))
        ]
        default = inspect.Parameter.empty if field.is_required() else field.default
        params.append(
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default
            )
        )
    return inspect.Signature(params, return_annotation=dict[str, Any])


def _tool_function(tool: Tool, state: State) -> Any:
    async def call(ctx: Context[Any, Any], **kwargs: Any) -> dict[str, Any]:
        # Arguments left out arrive as their defaults: pass on only what was given, so a
        # partial update changes only those fields.
        given = {k: v for k, v in kwargs.items() if v is not None}
        args = json.loads(json.dumps(given, default=str))
        result = await run_tool(_scope(ctx, state), tool.name, args, str(ctx.request_id))
        if "error" in result:
            raise ToolError(json.dumps(result))
        return result

    call.__signature__ = _signature(tool)  # type: ignore[attr-defined]
    call.__name__ = tool.name
    call.__doc__ = tool.description
    return call


def build_server(state: State) -> MCPServer:
    # The MCP library configures the root logger when a server is made (a Rich handler
    # and a level): every Huddle line would then be printed twice. Logging is Huddle's
    # to configure (huddle.core.logging): undo it.
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    server: MCPServer = MCPServer(
        name="huddle", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING"
    )
    root.handlers[:] = handlers
    root.setLevel(level)
    for tool in TOOLS.values():
        server.add_tool(
            _tool_function(tool, state),
            name=tool.name,
            description=tool.description,
            structured_output=True,
        )

    async def confirm_action(
        ctx: Context[Any, Any],
        action_id: Annotated[uuid.UUID, Field(description="The pending action's id.")],
    ) -> dict[str, Any]:
        """Carry out a pending action (e.g. a task deletion) proposed earlier."""
        scope = _scope(ctx, state)
        try:
            done = await ai_service.confirm_action(
                state, scope.user_id, action_id, scope.workspace_id
            )
        except AppError as exc:
            error = {"error": {"code": exc.code, "message": exc.message}}
            raise ToolError(json.dumps(error)) from exc
        return done.model_dump(mode="json")

    server.add_tool(confirm_action, name="confirm_action", structured_output=True)

    async def read(ctx: Context[Any, Any], name: str, args: dict[str, Any]) -> str:
        result = await run_tool(_scope(ctx, state), name, args, str(ctx.request_id), tools=READS)
        if "error" in result:
            raise ToolError(json.dumps(result))
        return json.dumps(result)

    @server.resource(
        "huddle://projects/{project_id}",
        name="project",
        description="A project (by id or name) with your role on it and its board's columns.",
        mime_type="application/json",
    )
    async def project(project_id: str, ctx: Context[Any, Any]) -> str:
        return await read(ctx, "get_project", {"project_id": project_id})

    @server.resource(
        "huddle://projects/{project_id}/tasks",
        name="project-tasks",
        description="A project's tasks in board order (the first 50); the project by id or name.",
        mime_type="application/json",
    )
    async def project_tasks(project_id: str, ctx: Context[Any, Any]) -> str:
        return await read(ctx, "list_tasks", {"project_id": project_id, "limit": 50})

    @server.resource(
        "huddle://tasks/{task_id}",
        name="task",
        description="One task.",
        mime_type="application/json",
    )
    async def task(task_id: str, ctx: Context[Any, Any]) -> str:
        return await read(ctx, "get_task", {"task_id": task_id})

    return server


class MCPEndpoint:
    """``/mcp`` and ``/mcp/``: Bearer authentication and the workspace, then the SDK."""

    def __init__(self, state: State) -> None:
        self.state = state
        self._runs = 0
        self._build()

    def _build(self) -> None:
        self.server = build_server(self.state)
        self.app: ASGIApp = self.server.streamable_http_app(
            streamable_http_path="/",
            stateless_http=True,
            json_response=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )

    def run(self) -> AbstractAsyncContextManager[None]:
        """The SDK's session manager, for the app's lifespan. A manager runs only once,
        so each lifespan (an app may be started again) gets a fresh server."""
        if self._runs:
            self._build()
        self._runs += 1
        return self.server.session_manager.run()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            user_id, workspace_id = await self._authenticate(scope)
        except AppError as exc:
            body: dict[str, Any] = {"error": exc.message, "code": exc.code}
            response = JSONResponse(body, status_code=exc.status_code, headers=exc.headers)
            await response(scope, receive, send)
            return
        inner = dict(scope)
        inner.update(path="/", raw_path=b"/", root_path="")
        inner[_USER] = user_id
        inner[_WORKSPACE] = workspace_id
        await self.app(inner, receive, send)

    async def _authenticate(self, scope: Scope) -> tuple[uuid.UUID, uuid.UUID | None]:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthenticated("Send an access token or API token as Authorization: Bearer")
        state = self.state
        user = await user_outside_transaction(state, token)
        wanted = _query_param(scope, "workspace_id") or headers.get("huddle-workspace")
        async with state.db.read_session() as session:
            if not wanted:
                return user.id, await ai_service.default_workspace(session, user.id)
            try:
                workspace_id = uuid.UUID(wanted.strip())
            except ValueError:
                raise NotFound("Workspace not found") from None
            await workspace_access(session, state.role_cache, user.id, workspace_id)
        return user.id, workspace_id


def _query_param(scope: Scope, name: str) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name)
    return values[0] if values else None
