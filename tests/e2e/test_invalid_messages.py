"""Bodies that are not one valid JSON-RPC message never reach the MCP server.

A body the filter cannot parse exactly as a server would is a body whose
meaning the filter cannot know, so it is refused: HTTP 400 with -32700 (not
JSON as RFC 8259 says, or ambiguous: duplicate keys, BOM, lone surrogates,
nesting deeper than 64) or -32600 (JSON, but not a JSON-RPC request the
filter can judge). Each body carries an allowed tool call and a marker, so
"not forwarded" is checked on a request that would otherwise have passed.
"""

from __future__ import annotations

import pytest

from assertions import INVALID_REQUEST, PARSE_ERROR, assert_http_error
from policy_proxy import PolicyProxy, new_marker

ECHO = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"m":"MARK"}}}'


def _fill(template: str | bytes, marker: str) -> bytes:
    raw = template if isinstance(template, bytes) else template.encode()
    return raw.replace(b"MARK", marker.encode())


PARSE_ERRORS = {
    "truncated": ECHO[:-1],
    "syntax-error": ECHO.replace('"id":1,', '"id":1,,'),
    "single-quotes": ECHO.replace('"jsonrpc"', "'jsonrpc'"),
    "trailing-comma": ECHO.replace("}}}", "},}}"),
    "comment": ECHO.replace('"id":1,', '"id":1,/* c */'),
    "nan": ECHO.replace('"id":1', '"id":NaN'),
    "leading-zero": ECHO.replace('"id":1', '"id":01'),
    "control-char-in-string": ECHO.replace('"m":"MARK"', '"m":"MARK\x01"'),
    "trailing-garbage": ECHO + " x",
    "two-messages": ECHO + ECHO,
    "trailing-nul": ECHO + "\x00",
    "utf8-bom": b"\xef\xbb\xbf" + ECHO.encode(),
    "invalid-utf8": ECHO.replace('"m":"MARK"', '"m":"MARK\udcff"').encode("utf-8", "surrogateescape"),
    "overlong-utf8": ECHO.encode().replace(b'"m":"MARK"', b'"m":"MARK\xc0\xaf"'),
    "lone-high-surrogate": ECHO.replace('"m":"MARK"', '"m":"MARK\\ud800"'),
    "lone-low-surrogate": ECHO.replace('"m":"MARK"', '"m":"MARK\\udc00x"'),
    "reversed-surrogates": ECHO.replace('"m":"MARK"', '"m":"MARK\\ude00\\ud83d"'),
    "duplicate-id": ECHO.replace('"id":1,', '"id":1,"id":2,'),
    "duplicate-jsonrpc": ECHO.replace('"id":1,', '"jsonrpc":"2.0","id":1,'),
    "duplicate-in-arguments": ECHO.replace('"m":"MARK"', '"m":"MARK","m":"MARK"'),
    "duplicate-escaped-key": ECHO.replace('"id":1,', '"id":1,"\\u0069d":2,'),
    "too-deep-arguments": ECHO.replace('"m":"MARK"', '"m":"MARK","d":' + "[" * 70 + "]" * 70),
    "bad-escape": ECHO.replace('"m":"MARK"', '"m":"MARK\\x41"'),
    "unterminated-string": ECHO.replace('"MARK"}}}', '"MARK}}}'),
    "missing-colon": ECHO.replace('"id":1', '"id" 1'),
}


@pytest.mark.parametrize("template", PARSE_ERRORS.values(), ids=PARSE_ERRORS.keys())
def test_unparseable_body_is_400_parse_error(main_proxy: PolicyProxy, template: str | bytes) -> None:
    marker = new_marker()
    response = main_proxy.post(_fill(template, marker), marker=marker)
    assert_http_error(response, 400, PARSE_ERROR, null_id=True)
    main_proxy.assert_refused_and_alive(marker)


def test_hugely_deep_nesting_is_refused_without_crashing(main_proxy: PolicyProxy) -> None:
    """200 000 open brackets: a recursive parser would overflow its stack and trap."""
    marker = new_marker()
    body = ECHO.replace('"m":"MARK"', '"m":"MARK","d":' + "[" * 200_000 + "]" * 200_000)
    response = main_proxy.post(_fill(body, marker), marker=marker)
    assert_http_error(response, 400, PARSE_ERROR, null_id=True)
    main_proxy.assert_refused_and_alive(marker)


def test_moderate_nesting_passes(main_proxy: PolicyProxy) -> None:
    marker = new_marker()
    body = _fill(ECHO.replace('"m":"MARK"', '"m":"MARK","d":' + "[" * 30 + "]" * 30), marker)
    response = main_proxy.post(body, marker=marker)
    main_proxy.assert_upstream_answered(response, marker)
    main_proxy.assert_forwarded(marker, body)


@pytest.mark.parametrize(
    "suffix", [b"\n", b"\r\n", b"  \t\n"], ids=["newline", "crlf", "spaces-tab-newline"]
)
def test_trailing_whitespace_is_fine(main_proxy: PolicyProxy, suffix: bytes) -> None:
    """JSON allows whitespace around the value; many clients end bodies with a newline."""
    marker = new_marker()
    body = _fill(ECHO, marker) + suffix
    response = main_proxy.post(b" \n" + body, marker=marker)
    main_proxy.assert_upstream_answered(response, marker)
    main_proxy.assert_forwarded(marker, b" \n" + body)


def test_valid_surrogate_pair_and_escapes_pass(main_proxy: PolicyProxy) -> None:
    marker = new_marker()
    body = _fill(ECHO.replace('"m":"MARK"', '"m":"MARK \\ud83d\\ude00 \\u00e9 \\" \\\\ \\/ \\n","u":"é😀"'), marker)
    response = main_proxy.post(body, marker=marker)
    main_proxy.assert_upstream_answered(response, marker)
    main_proxy.assert_forwarded(marker, body)


INVALID_REQUESTS = {
    "no-jsonrpc": '{"id":1,"method":"tools/call","params":{"name":"echo","arguments":{"m":"MARK"}}}',
    "jsonrpc-1.0": ECHO.replace('"2.0"', '"1.0"'),
    "jsonrpc-number": ECHO.replace('"2.0"', "2.0"),
    "method-number": ECHO.replace('"tools/call"', "5"),
    "method-null": ECHO.replace('"tools/call"', "null"),
    "method-missing": '{"jsonrpc":"2.0","id":1,"params":{"name":"echo","arguments":{"m":"MARK"}}}',
    "id-object": ECHO.replace('"id":1', '"id":{"m":"MARK"}'),
    "id-array": ECHO.replace('"id":1', '"id":["MARK"]'),
    "id-bool": ECHO.replace('"id":1', '"id":true'),
    "call-notification": '{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo","arguments":{"m":"MARK"}}}',
    "call-id-null": ECHO.replace('"id":1', '"id":null'),
    "call-params-missing": '{"jsonrpc":"2.0","id":1,"method":"tools/call","m":"MARK"}',
    "call-params-array": '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["echo","MARK"]}',
    "call-params-string": '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":"echo MARK"}',
    "call-name-missing": '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{"m":"MARK"}}}',
    "call-name-number": ECHO.replace('"name":"echo"', '"name":5'),
    "call-name-null": ECHO.replace('"name":"echo"', '"name":null'),
    "call-name-array": ECHO.replace('"name":"echo"', '"name":["echo"]'),
    "call-name-object": ECHO.replace('"name":"echo"', '"name":{"echo":1}'),
    "top-level-number": "123",
    "top-level-string": '"MARK"',
    "top-level-null": "null",
    "top-level-true": "true",
    "empty-batch": "[]",
}


@pytest.mark.parametrize("template", INVALID_REQUESTS.values(), ids=INVALID_REQUESTS.keys())
def test_not_a_judgeable_request_is_400_invalid_request(main_proxy: PolicyProxy, template: str) -> None:
    marker = new_marker()
    response = main_proxy.post(_fill(template, marker), marker=marker)
    assert_http_error(response, 400, INVALID_REQUEST)
    main_proxy.assert_refused_and_alive(marker)


def test_empty_body_post_does_not_crash(main_proxy: PolicyProxy) -> None:
    """A POST with Content-Length 0 carries no message: whatever is answered, the filter keeps serving."""
    marker = new_marker()
    response = main_proxy.post(b"", marker=marker)
    assert response.status_code < 500, response.text
    main_proxy.assert_still_serves()
