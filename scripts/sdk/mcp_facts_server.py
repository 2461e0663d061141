"""A small stdio MCP server (the official `mcp` SDK) for the agent test: one tool that
knows something the model cannot."""
from mcp.server.mcpserver import MCPServer

server = MCPServer("facts")


@server.tool()
def secret_code(person: str) -> str:
    """Look up the secret code of a person."""
    return f"The secret code of {person} is ZEBRA-4417."


if __name__ == "__main__":
    server.run()
