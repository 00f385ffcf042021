"""The MCP server: the assistant's tools for outside agents, at ``/mcp``."""
