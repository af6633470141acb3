"""A real MCP client that is not hutch's: the `mcp` Python package's stdio
client (`ClientSession` over `stdio_client`), driven line by line by the
Rust tests in tests/tests/mcp.rs.

It starts the server given on its command line (with this process's whole
environment, so HUTCH_STATE_DIR and the like reach it), initializes, then
reads one JSON command per line on stdin and prints one JSON answer per line
on stdout:

  {"op": "list"}                                   -> {"tools": [...]}
  {"op": "call", "name": N, "arguments": A}        -> {"result": R, "progress": [...]} or {"error": {...}}
  {"op": "cancel", "name": N, "arguments": A}      -> starts the call, cancels it at its
                                                      first progress notification
                                                      -> {"cancelled": true, "progress": [...]}

R is {"is_error", "text", "structured"}; an MCP error is {"code", "message"}.
"""

import json
import os
import sys

import anyio
from mcp import ClientSession, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client


def result_json(result):
    texts = [c.text for c in result.content if getattr(c, "type", None) == "text"]
    return {"is_error": bool(result.is_error), "text": "\n".join(texts), "structured": result.structured_content}


async def call(session, command):
    progress = []

    async def on_progress(value, total, message):
        progress.append({"progress": value, "message": message})

    try:
        result = await session.call_tool(command["name"], command.get("arguments"), progress_callback=on_progress)
    except MCPError as e:
        return {"error": {"code": e.error.code, "message": e.error.message}, "progress": progress}
    return {"result": result_json(result), "progress": progress}


async def cancel(session, command):
    progress = []
    started = anyio.Event()

    async def on_progress(value, total, message):
        progress.append({"progress": value, "message": message})
        started.set()

    outcome = {}
    async with anyio.create_task_group() as group:

        async def run():
            try:
                result = await session.call_tool(command["name"], command.get("arguments"), progress_callback=on_progress)
                outcome["result"] = result_json(result)
            except MCPError as e:
                outcome["error"] = {"code": e.error.code, "message": e.error.message}

        group.start_soon(run)
        with anyio.fail_after(120):
            await started.wait()
        # Cancelling the caller: the client sends notifications/cancelled.
        group.cancel_scope.cancel()
    return {"cancelled": "result" not in outcome and "error" not in outcome, "progress": progress, **outcome}


async def main():
    server = StdioServerParameters(command=sys.argv[1], args=sys.argv[2:], env=dict(os.environ))
    async with stdio_client(server) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            print(json.dumps({"server": init.server_info.name, "protocol": init.protocol_version}), flush=True)
            stdin = anyio.wrap_file(sys.stdin)
            async for line in stdin:
                if not line.strip():
                    continue
                command = json.loads(line)
                if command["op"] == "list":
                    tools = (await session.list_tools()).tools
                    answer = {
                        "tools": [
                            {"name": t.name, "description": t.description, "input": t.input_schema, "output": t.output_schema}
                            for t in tools
                        ]
                    }
                elif command["op"] == "call":
                    answer = await call(session, command)
                elif command["op"] == "cancel":
                    answer = await cancel(session, command)
                else:
                    answer = {"bridge_error": "unknown op " + command["op"]}
                print(json.dumps(answer), flush=True)


anyio.run(main)
