"""Reference approval service for mcp-policy's `approve` action.

The filter holds a tool call that needs approval and POSTs one JSON object to
this service (through the Envoy cluster named in `policy.approval.cluster`):

    POST /approve
    {"tool": "claude_code", "arguments": {...}, "grant": "<16 hex digits>",
     "session": "<Mcp-Session-Id or absent>", "request_id": "<x-request-id>",
     "jsonrpc_id": 7, "rule": "tools.claude_code", "reason": "..."}

and expects, within `policy.approval.timeout_ms` (default 30 s):

    200 {"decision": "allow"}
    200 {"decision": "deny", "reason": "not during the freeze"}

Anything else (another status, no decision, invalid JSON, a timeout, the
service down) refuses the call with JSON-RPC error -31003.

Modes:
  --mode ask    ask on this terminal, one call at a time (default)
  --mode rule   approve tools named with --approve (comma list), deny others
  --mode allow  approve everything (demos only)
  --mode deny   refuse everything
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_ASK_LOCK = threading.Lock()


def decide(call: dict, mode: str, approved_tools: set[str]) -> dict:
    """The decision for one call, as the JSON object to answer."""
    tool = str(call.get("tool", ""))
    if mode == "allow":
        return {"decision": "allow"}
    if mode == "deny":
        return {"decision": "deny", "reason": "this approver refuses every call"}
    if mode == "rule":
        if tool in approved_tools:
            return {"decision": "allow"}
        return {"decision": "deny", "reason": f"{tool} is not on the approver's list"}
    with _ASK_LOCK:  # one question on the terminal at a time
        print(f"\n[approval] {tool} {json.dumps(call.get('arguments'))}", flush=True)
        print(f"  grant {call.get('grant')} session {call.get('session')} rule {call.get('rule')}")
        print(f"  why: {call.get('reason')}")
        answer = input("  approve? [y/N] ").strip().lower()
    if answer in ("y", "yes"):
        return {"decision": "allow"}
    return {"decision": "deny", "reason": "refused by the operator"}


def make_handler(mode: str, approved_tools: set[str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (http.server naming)
            length = int(self.headers.get("content-length") or 0)
            try:
                call = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError:
                self._answer(400, {"error": "body is not JSON"})
                return
            self._answer(200, decide(call, mode, approved_tools))

        def _answer(self, status: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args: object) -> None:
            sys.stderr.write("[approval] " + fmt % args + "\n")

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8500)
    parser.add_argument("--mode", choices=["ask", "rule", "allow", "deny"], default="ask")
    parser.add_argument("--approve", default="", help="comma-separated tools approved in --mode rule")
    args = parser.parse_args()
    approved = {t for t in args.approve.split(",") if t}
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.mode, approved))
    print(f"[approval] listening on 127.0.0.1:{args.port} (mode {args.mode})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
