"""A small MCP server (the official `mcp` SDK) for the agent test: one tool that knows
something the model cannot. Over stdio, or with `sse PORT` over the HTTP+SSE transport
(protocol 2024-11-05: an event stream at /sse, messages posted to /messages/)."""
import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("facts")


@server.tool()
def secret_code(person: str) -> str:
    """Look up the secret code of a person."""
    return f"The secret code of {person} is ZEBRA-4417."


if __name__ == "__main__":
    if sys.argv[1:2] == ["sse"]:
        server.run("sse", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
