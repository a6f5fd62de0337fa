"""Built-in tools: list them, or run one in the caller's workspace."""

from __future__ import annotations

from cadre.connexion.binding import Reply
from cadre.engine.tools.base import ToolContext
from cadre.engine.tools.registry import execute_tool as run_tool
from cadre.engine.tools.registry import list_tools as registered_tools
from cadre.engine.tools.workspace import user_workspace
from cadre.settings import Settings
from models_gen.api import ToolInfo, ToolList, ToolResult


async def list_tools(category: str | None = None) -> Reply:
    tools = [
        ToolInfo(
            name=tool.name,
            description=tool.description,
            category=tool.category,
            parameters=tool.parameters,
        )
        for tool in registered_tools(category)
    ]
    return ToolList(tools=tools), 200


async def execute_tool(user: str, tool_name: str, body: dict, settings: Settings) -> Reply:
    workspace = user_workspace(settings.data_dir, user)
    context = ToolContext(
        workspace,
        "full",
        settings.path_limits,
        settings.ast_limits,
        settings.workspace_quota_bytes,
        settings.shell_limits,
    )
    result = await run_tool(tool_name, body["args"], context)
    return ToolResult(result=result), 200
