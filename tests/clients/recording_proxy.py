"""A pass-through HTTP proxy that records every JSON-RPC request it forwards.

    .venv/bin/python tests/clients/recording_proxy.py --upstream http://127.0.0.1:SERVER --port P --record FILE

Placed between Envoy and a server that keeps no record of its own
(server-everything), it appends one JSON line per JSON-RPC message of each
POST body it forwards ({"method", "params"}; a batch gives one line per
message), so a test can prove what never reached the server. Everything is
streamed through unchanged (event streams included).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length", "host"}


def _messages(body: bytes) -> list[dict]:
    try:
        parsed = json.loads(body)
    except ValueError:
        return [{"method": "<unparsable>", "params": body.decode("utf-8", "replace")[:2000]}]
    items = parsed if isinstance(parsed, list) else [parsed]
    return [{"method": m.get("method"), "params": m.get("params")} for m in items if isinstance(m, dict)]


def build_app(upstream: str, record: Path) -> Starlette:
    client = httpx.AsyncClient(base_url=upstream, timeout=httpx.Timeout(30.0, read=None))

    async def proxy(request: Request) -> StreamingResponse:
        body = await request.body()
        if request.method == "POST" and body:
            with open(record, "a", encoding="utf-8") as out:
                for message in _messages(body):
                    out.write(json.dumps(message) + "\n")
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        outgoing = client.build_request(request.method, request.url.path, params=request.url.query,
                                        headers=headers, content=body)  # fmt: skip
        response = await client.send(outgoing, stream=True)
        answer_headers = {k: v for k, v in response.headers.items() if k.lower() not in HOP_BY_HOP}
        return StreamingResponse(response.aiter_raw(), status_code=response.status_code, headers=answer_headers,
                                 background=BackgroundTask(response.aclose))  # fmt: skip

    return Starlette(routes=[Route("/{path:path}", proxy, methods=["GET", "POST", "DELETE"])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", type=Path, required=True)
    args = parser.parse_args()
    uvicorn.run(build_app(args.upstream, args.record), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
