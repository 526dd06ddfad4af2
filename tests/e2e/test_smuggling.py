"""Ways to get a denied call past a gateway that real gateways have fallen for.

Each test dresses a call to a denied tool (claude_code, delete_everything)
so that some parser would read it differently from the server, asserts the
server never received it, then checks an allowed call still goes through.
Sources: parser differentials of the official SDK servers (duplicate keys,
escapes, key case), batches, encodings, framing (chunks, lying lengths,
HTTP/2 frames and trailers).
"""

from __future__ import annotations

import gzip
import zlib

import httpx
import pytest

from assertions import PARSE_ERROR, POLICY_DENIED, assert_http_error, assert_policy_refusal, parse_json
from policies import CLAUDE_CODE_REASON
from policy_proxy import JSON_HEADERS, PolicyProxy, call_message, new_marker, to_bytes
from raw_http import H2Request, h2_exchange, http1_exchange, http1_request, jsonrpc_bytes

DENIED = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"claude_code","arguments":{"prompt":"MARK"}}}'


def _fill(template: str, marker: str) -> bytes:
    return template.replace("MARK", marker).encode()


def _refused_any_way(response: httpx.Response | object, marker: str, proxy: PolicyProxy) -> None:
    """Refused with a JSON-RPC error of some kind (policy or protocol); then nothing leaked."""
    status = getattr(response, "status_code", None) or getattr(response, "status")
    body = getattr(response, "content", None) or getattr(response, "body")
    assert status in (200, 400), f"{status}: {body[:500]!r}"
    message = parse_json(body)
    messages = message if isinstance(message, list) else [message]
    assert messages and all("error" in m and "result" not in m for m in messages), body[:500]
    proxy.assert_refused_and_alive(marker)


# -- duplicate keys: servers take the last value ------------------------------


DUPLICATES = {
    "name": '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"claude_code_session","name":"claude_code","arguments":{"prompt":"MARK"}}}',
    "name-escaped": '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","n\\u0061me":"claude_code","arguments":{"prompt":"MARK"}}}',
    "method": '{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call","params":{"name":"claude_code","arguments":{"prompt":"MARK"}}}',
    "params": '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"},"params":{"name":"claude_code","arguments":{"prompt":"MARK"}}}',
}


@pytest.mark.parametrize("template", DUPLICATES.values(), ids=DUPLICATES.keys())
def test_duplicate_keys_are_a_parse_error(main_proxy: PolicyProxy, template: str) -> None:
    marker = new_marker()
    response = main_proxy.post(_fill(template, marker), marker=marker)
    assert_http_error(response, 400, PARSE_ERROR, null_id=True)
    main_proxy.assert_refused_and_alive(marker)


# -- escapes: "tools\/call" is tools/call ----------------------------------------


ESCAPED_METHODS = ["tools\\/call", "\\u0074ools/call", "tools\\u002fcall", "\\u0074\\u006f\\u006f\\u006c\\u0073\\u002f\\u0063\\u0061\\u006c\\u006c"]


@pytest.mark.parametrize("method", ESCAPED_METHODS)
def test_escaped_method_is_tools_call(main_proxy: PolicyProxy, method: str) -> None:
    marker = new_marker()
    response = main_proxy.post(_fill(DENIED.replace('"tools/call"', f'"{method}"'), marker), marker=marker)
    assert_policy_refusal(response, request_id=1, tool="claude_code", reason=CLAUDE_CODE_REASON)
    main_proxy.assert_refused_and_alive(marker)


@pytest.mark.parametrize("key", ["\\u006eame", "n\\u0061me", "nam\\u0065"])
def test_escaped_name_key_is_name(main_proxy: PolicyProxy, key: str) -> None:
    marker = new_marker()
    response = main_proxy.post(_fill(DENIED.replace('"name"', f'"{key}"'), marker), marker=marker)
    assert_policy_refusal(response, request_id=1, tool="claude_code", reason=CLAUDE_CODE_REASON)
    main_proxy.assert_refused_and_alive(marker)


# -- key case: ignored by JS/Python servers, folded by the Go SDK once --------------


CASE_VARIANTS = {
    "Name-only": '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"Name":"claude_code","arguments":{"prompt":"MARK"}}}',
    "name-and-Name": '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","Name":"claude_code","arguments":{"prompt":"MARK"}}}',
    "Name-and-name": '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"NAME":"claude_code","name":"echo","arguments":{"prompt":"MARK"}}}',
    "Method": '{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/call","params":{"name":"claude_code","arguments":{"prompt":"MARK"}}}',
    "Params": '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"},"Params":{"name":"claude_code","arguments":{"prompt":"MARK"}}}',
}


@pytest.mark.parametrize("template", CASE_VARIANTS.values(), ids=CASE_VARIANTS.keys())
def test_case_variant_keys_do_not_smuggle(main_proxy: PolicyProxy, template: str) -> None:
    marker = new_marker()
    response = main_proxy.post(_fill(template, marker), marker=marker)
    _refused_any_way(response, marker, main_proxy)


def test_request_disguised_as_response(main_proxy: PolicyProxy) -> None:
    """A message with both `method` and `result`: some servers dispatch on `method`."""
    marker = new_marker()
    response = main_proxy.post(_fill(DENIED.replace('"id":1,', '"id":1,"result":{},'), marker), marker=marker)
    _refused_any_way(response, marker, main_proxy)


# -- encodings -------------------------------------------------------------------


def test_utf8_bom_is_a_parse_error(main_proxy: PolicyProxy) -> None:
    marker = new_marker()
    response = main_proxy.post(b"\xef\xbb\xbf" + _fill(DENIED, marker), marker=marker)
    assert_http_error(response, 400, PARSE_ERROR, null_id=True)
    main_proxy.assert_refused_and_alive(marker)


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_utf16_body_is_a_parse_error(main_proxy: PolicyProxy, codec: str) -> None:
    """Servers accept `charset=utf-16`; the filter only judges UTF-8, so it refuses."""
    marker = new_marker()
    body = DENIED.replace("MARK", marker).encode(codec)
    response = main_proxy.post(body, headers={"content-type": f"application/json; charset={codec}"}, marker=marker)
    assert_http_error(response, 400, PARSE_ERROR, null_id=True)
    main_proxy.assert_refused_and_alive(marker)


@pytest.mark.parametrize(
    "encoding", ["gzip", "deflate", "br", "GZIP", "x-gzip", "gzip, identity", "identity, gzip", "compress", "zstd"]
)
def test_content_encoding_is_415(main_proxy: PolicyProxy, encoding: str) -> None:
    """express.json inflates gzip/deflate/br bodies; the filter cannot judge them: 415."""
    marker = new_marker()
    plain = _fill(DENIED, marker)
    body = zlib.compress(plain) if encoding == "deflate" else gzip.compress(plain)
    response = main_proxy.post(body, headers={"content-encoding": encoding}, marker=marker)
    assert response.status_code == 415, response.text
    main_proxy.assert_refused_and_alive(marker)
    # The marker must not have travelled in clear either (gzip hides it from the body scan).
    assert not [r for r in main_proxy.upstream.requests() if r.body == body], "compressed body reached the server"


def test_two_content_encoding_headers_are_415(main_proxy: PolicyProxy) -> None:
    marker = new_marker()
    body = gzip.compress(_fill(DENIED, marker))
    headers = [*JSON_HEADERS.items(), ("x-test-marker", marker), ("content-encoding", "identity"), ("content-encoding", "gzip")]
    response = main_proxy.client.post("/mcp", content=body, headers=headers)
    assert response.status_code == 415, response.text
    main_proxy.assert_refused_and_alive(marker)
    assert not [r for r in main_proxy.upstream.requests() if r.body == body], "compressed body reached the server"


def test_identity_encoding_is_inspected_normally(main_proxy: PolicyProxy) -> None:
    marker = new_marker()
    response = main_proxy.post(_fill(DENIED, marker), headers={"content-encoding": "identity"}, marker=marker)
    assert_policy_refusal(response, request_id=1, tool="claude_code")
    main_proxy.assert_refused_and_alive(marker)
    allowed = new_marker()
    response = main_proxy.call("echo", {"m": allowed}, headers={"content-encoding": "identity"}, marker=allowed)
    main_proxy.assert_upstream_answered(response, allowed)


# -- HTTP/1.1 framing ----------------------------------------------------------------


def _split_inside(body: bytes, needle: bytes, pieces: int = 4) -> list[bytes]:
    """Chunks of `body`, one boundary falling inside `needle`, the rest spread evenly."""
    cut = body.index(needle) + len(needle) // 2
    step = max(1, len(body) // pieces)
    cuts = sorted({cut, *range(step, len(body), step)})
    return [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)])]


def test_chunked_denied_call_split_inside_name(main_proxy: PolicyProxy) -> None:
    marker = new_marker()
    body = _fill(DENIED, marker)
    writes = http1_request("POST", "/mcp", [("Content-Type", "application/json"), ("x-test-marker", marker)], body,
                           chunks=_split_inside(body, b"claude_code"))  # fmt: skip
    [response] = http1_exchange(main_proxy.port, writes, pause=0.05)
    assert_policy_refusal(response, request_id=1, tool="claude_code")
    main_proxy.assert_refused_and_alive(marker)


def test_chunked_allowed_call_is_forwarded_unchanged(main_proxy: PolicyProxy) -> None:
    marker = new_marker()
    body = to_bytes(call_message("echo", {"m": marker, "pad": "x" * 3000}, 1))
    writes = http1_request("POST", "/mcp", [("Content-Type", "application/json"), ("x-test-marker", marker)], body,
                           chunks=_split_inside(body, b"echo", pieces=6))  # fmt: skip
    [response] = http1_exchange(main_proxy.port, writes, pause=0.05)
    assert response.status == 200 and "result" in response.json(), response.text
    main_proxy.assert_forwarded(marker, body)


def test_body_trickling_in_bytewise(main_proxy: PolicyProxy) -> None:
    """Every byte its own TCP segment: the filter sees many body callbacks."""
    marker = new_marker()
    body = _fill(DENIED, marker)
    head = http1_request("POST", "/mcp", [("Content-Type", "application/json"), ("x-test-marker", marker)], body)[0]
    head, payload = head[: -len(body)], body
    writes = [head] + [payload[i : i + 1] for i in range(0, 60)] + [payload[60:]]
    [response] = http1_exchange(main_proxy.port, writes, pause=0.002)
    assert_policy_refusal(response, request_id=1, tool="claude_code")
    main_proxy.assert_refused_and_alive(marker)


def test_content_length_shorter_than_body(main_proxy: PolicyProxy) -> None:
    """Content-Length covers a harmless prefix; the rest reads as a second, denied request."""
    marker = new_marker()
    first = _fill('{"jsonrpc":"2.0","id":1,"method":"ping"}', marker + "-a")
    second_body = _fill(DENIED, marker)
    second = http1_request("POST", "/mcp", [("Content-Type", "application/json"), ("x-test-marker", marker)], second_body)[0]
    head = f"POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(first)}\r\n\r\n".encode()
    responses = http1_exchange(main_proxy.port, [head + first + second], responses=2)
    assert responses and responses[0].status == 200, responses
    if len(responses) == 2:
        assert_policy_refusal(responses[1], request_id=1, tool="claude_code")
    main_proxy.assert_refused_and_alive(marker)


def test_content_length_longer_than_body(main_proxy: PolicyProxy) -> None:
    """The body never completes: nothing of it may reach the server."""
    marker = new_marker()
    body = _fill(DENIED, marker)
    head = f"POST /mcp HTTP/1.1\r\nHost: x\r\nx-test-marker: {marker}\r\nContent-Length: {len(body) + 100}\r\n\r\n".encode()
    responses = http1_exchange(main_proxy.port, [head + body], responses=1, timeout=1.0)
    assert not responses or responses[0].status >= 400, responses
    main_proxy.assert_refused_and_alive(marker)


def test_chunked_and_content_length_together(main_proxy: PolicyProxy) -> None:
    marker = new_marker()
    body = _fill(DENIED, marker)
    head = (f"POST /mcp HTTP/1.1\r\nHost: x\r\nx-test-marker: {marker}\r\nContent-Length: 5\r\n"
            f"Transfer-Encoding: chunked\r\n\r\n").encode()  # fmt: skip
    responses = http1_exchange(main_proxy.port, [head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)], responses=1)
    assert responses and responses[0].status in (200, 400), responses
    if responses[0].status == 200:
        assert_policy_refusal(responses[0], request_id=1, tool="claude_code")
    main_proxy.assert_refused_and_alive(marker)


def test_pipelined_requests_are_each_inspected(main_proxy: PolicyProxy) -> None:
    marker = new_marker()
    headers = [("Content-Type", "application/json"), ("x-test-marker", marker)]
    allowed = to_bytes(call_message("echo", {"m": marker + "-ok"}, 1))
    writes = [http1_request("POST", "/mcp", headers, allowed)[0] + http1_request("POST", "/mcp", headers, _fill(DENIED, marker))[0]]
    first, second = http1_exchange(main_proxy.port, writes, responses=2)
    assert first.status == 200 and "result" in first.json(), first.text
    assert_policy_refusal(second, request_id=1, tool="claude_code")
    main_proxy.upstream.wait_for(marker + "-ok")
    seen = [r for r in main_proxy.upstream.matching(marker) if marker.encode() + b'"' in r.body]
    assert not seen, "the denied pipelined request reached the server"
    main_proxy.assert_still_serves()


# -- HTTP/2 ---------------------------------------------------------------------


def test_http2_denied_and_allowed(main_proxy: PolicyProxy) -> None:
    marker = new_marker()
    with httpx.Client(http1=False, http2=True, base_url=main_proxy.envoy.url, timeout=10) as client:
        response = client.post("/mcp", content=_fill(DENIED, marker), headers={**JSON_HEADERS, "x-test-marker": marker})
        assert response.http_version == "HTTP/2"
        assert_policy_refusal(response, request_id=1, tool="claude_code")
        allowed = new_marker()
        body = to_bytes(call_message("echo", {"m": allowed}, 2))
        response = client.post("/mcp", content=body, headers={**JSON_HEADERS, "x-test-marker": allowed})
        main_proxy.assert_upstream_answered(response, allowed, request_id=2)
        main_proxy.assert_forwarded(allowed, body)
    main_proxy.assert_refused_and_alive(marker)


def test_http2_interleaved_streams(main_proxy: PolicyProxy) -> None:
    """Several streams on one connection, DATA frames interleaved: each judged on its own body."""
    marker = new_marker()
    requests, expected = [], []
    for index in range(6):
        allowed = index % 2 == 0
        body = to_bytes(call_message("echo" if allowed else "claude_code", {"m": f"{marker}-{index}", "pad": "y" * 500}, index))
        requests.append(H2Request(headers=[("content-type", "application/json"), ("x-test-marker", f"{marker}-{index}")],
                                  body_parts=_split_inside(body, b'"name"', pieces=3)))  # fmt: skip
        expected.append(allowed)
    answers = h2_exchange(main_proxy.port, requests, pause=0.02)
    for index, (answer, allowed) in enumerate(zip(answers, expected)):
        if allowed:
            assert answer.status == 200 and "result" in answer.json(), answer
            main_proxy.assert_forwarded(f"{marker}-{index}")
        else:
            assert_policy_refusal(answer, request_id=index, tool="claude_code")
    main_proxy.assert_still_serves()
    for index in range(1, 6, 2):
        main_proxy.assert_not_forwarded(f"{marker}-{index}")


def test_http2_request_trailers(main_proxy: PolicyProxy) -> None:
    """With trailers the body never ends with end_stream; the filter must still decide."""
    marker = new_marker()
    headers = [("content-type", "application/json"), ("x-test-marker", marker)]
    denied = H2Request(headers=headers, body_parts=[_fill(DENIED, marker)], trailers=[("x-trailer", "t")])
    [answer] = h2_exchange(main_proxy.port, [denied])
    assert_policy_refusal(answer, request_id=1, tool="claude_code")
    main_proxy.assert_refused_and_alive(marker)

    allowed_marker = new_marker()
    body = to_bytes(call_message("echo", {"m": allowed_marker}, 2))
    allowed = H2Request(headers=[("content-type", "application/json"), ("x-test-marker", allowed_marker)],
                        body_parts=[body[:20], body[20:]], trailers=[("x-trailer", "t")])  # fmt: skip
    [answer] = h2_exchange(main_proxy.port, [allowed], pause=0.02)
    assert answer.status == 200 and "result" in answer.json(), answer
    main_proxy.assert_forwarded(allowed_marker, body)


def test_http2_denied_call_without_content_length_in_many_frames(main_proxy: PolicyProxy) -> None:
    marker = new_marker()
    body = _fill(DENIED, marker)
    request = H2Request(headers=[("content-type", "application/json"), ("x-test-marker", marker)],
                        body_parts=[body[i : i + 7] for i in range(0, len(body), 7)])  # fmt: skip
    [answer] = h2_exchange(main_proxy.port, [request], pause=0.005)
    assert_policy_refusal(answer, request_id=1, tool="claude_code")
    main_proxy.assert_refused_and_alive(marker)


def test_http2_batch_with_denied_call(main_proxy: PolicyProxy) -> None:
    marker = new_marker()
    batch = jsonrpc_bytes([call_message("echo", {"m": marker}, 1), call_message("claude_code", {"prompt": marker}, 2)])
    [answer] = h2_exchange(main_proxy.port, [H2Request(headers=[("x-test-marker", marker)], body_parts=[batch])])
    answers = answer.json()
    assert answer.status == 200 and isinstance(answers, list), answer
    assert all(isinstance(a.get("error"), dict) and a["error"].get("code") == POLICY_DENIED for a in answers), answer
    main_proxy.assert_refused_and_alive(marker)
