"""`--mcp`: every demo is also an MCP tool, reached with a real MCP client (the `mcp`
package, streamable HTTP) through the same door and queue as every other caller."""

from __future__ import annotations

import asyncio
import json

import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from support import running_hub


async def _list_and_call(url: str) -> tuple[dict, object]:
    async with streamable_http_client(url + "gradio_api/mcp/") as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = {tool.name: tool for tool in (await session.list_tools()).tools}
            answer = await session.call_tool("questions", {"question": "Who wrote Hamlet?"})
            return tools, answer


def test_an_mcp_client_lists_the_demos_as_tools_and_calls_questions():
    with running_hub("--only", "questions", "--mcp") as hub:
        tools, answer = asyncio.run(asyncio.wait_for(_list_and_call(hub.url), 120))
        assert set(tools) == {"questions"}
        assert "TREC" in tools["questions"].description
        assert tools["questions"].inputSchema["required"] == ["question"]
        assert not answer.isError, answer.content
        text = answer.content[0].text
        assert "'fine_label': 'HUM:ind'" in text and "'trained': True" in text
        status, schema = hub.get("/gradio_api/mcp/schema")
        assert status == 200 and json.loads(schema)[0]["name"] == "questions"
        # the door still closes the direct route that would skip the queue
        assert httpx.post(hub.url + "gradio_api/run/questions", json={"data": ["Who?"]}).status_code == 404
