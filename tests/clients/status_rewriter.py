"""A pass-through HTTP proxy that changes the status of the filter's local refusals.

    .venv/bin/python tests/clients/status_rewriter.py --upstream http://127.0.0.1:ENVOY --port P --status 403

Everything is streamed through unchanged (the legacy `GET /sse` stream
included), except answers the filter made itself (`x-mcp-policy: denied` or
`rate_limited`): those keep their JSON-RPC body and headers but get
`--status` instead of 200. It shows, with the real clients, what they would
do if the filter refused POSTs of the legacy HTTP+SSE transport with a 4xx,
without changing the filter. Used by test_legacy_sse.py only.
"""

from __future__ import annotations

import argparse

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length", "host"}


def build_app(upstream: str, status: int) -> Starlette:
    client = httpx.AsyncClient(base_url=upstream, timeout=httpx.Timeout(30.0, read=None))

    async def proxy(request: Request) -> StreamingResponse:
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        outgoing = client.build_request(
            request.method, request.url.path, params=request.url.query, headers=headers, content=await request.body()
        )
        response = await client.send(outgoing, stream=True)
        code = response.status_code
        if response.headers.get("x-mcp-policy") in ("denied", "rate_limited"):
            code = status
        answer_headers = {k: v for k, v in response.headers.items() if k.lower() not in HOP_BY_HOP}
        return StreamingResponse(
            response.aiter_raw(), status_code=code, headers=answer_headers, background=BackgroundTask(response.aclose)
        )

    methods = ["GET", "POST", "DELETE"]
    return Starlette(routes=[Route("/{path:path}", proxy, methods=methods)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--status", type=int, default=403)
    args = parser.parse_args()
    uvicorn.run(build_app(args.upstream, args.status), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
