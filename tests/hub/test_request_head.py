"""The strict request-head checks (`zosnode.http.requesthead`), as pure code, whole."""

from __future__ import annotations

import re
import string
from urllib.parse import unquote

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zosnode.http.messages import Request
from zosnode.http.requesthead import HttpRefused, check_head, head_end, parse_target

# --- parse_target ------------------------------------------------------------

@pytest.mark.parametrize(("method", "target", "path", "query", "authority"), [
    ("GET", "/", "/", {}, None),
    ("GET", "/blocks/ab/abcd", "/blocks/ab/abcd", {}, None),
    ("GET", "/a:b@c!$&'()*+,;=-._~", "/a:b@c!$&'()*+,;=-._~", {}, None),
    ("GET", "//x/y", "//x/y", {}, None),  # a path with an empty segment, not an authority
    ("GET", "/a%20b", "/a b", {}, None),
    ("GET", "/%C3%A9", "/\u00e9", {}, None),
    ("GET", "/a?x=1&y=%41+b&&z", "/a", {"x": "1", "y": "A b", "z": ""}, None),
    ("GET", "/a?q=/?:@", "/a", {"q": "/?:@"}, None),
    ("GET", "/a?", "/a", {}, None),
    ("GET", "http://host/x", "/x", {}, "host"),
    ("GET", "HTTP://Host.Example:8080/x?a=b", "/x", {"a": "b"}, "Host.Example:8080"),
    ("GET", "http://127.0.0.1:80", "/", {}, "127.0.0.1:80"),
    ("GET", "http://h?x=1", "/", {"x": "1"}, "h"),
    ("GET", "http://[::1]:8080/x", "/x", {}, "[::1]:8080"),
    ("GET", "http://[2001:db8::1]/", "/", {}, "[2001:db8::1]"),
    ("GET", "http://[::ffff:1.2.3.4]/", "/", {}, "[::ffff:1.2.3.4]"),
    ("GET", "http://h//x", "//x", {}, "h"),
    ("OPTIONS", "*", "*", {}, None),
])
def test_targets_that_are_served(method: str, target: str, path: str,
                                 query: dict[str, str], authority: str | None) -> None:
    assert parse_target(method, target) == (path, query, authority)


@pytest.mark.parametrize("target", [
    "", "x", "*x", "host:443", "//[", "//]", "/[", "/a]", "/a#b", "/a b", "/a\"b", "/<a>",
    "/a\\b", "/a^b", "/a`b", "/a{b}", "/a|b", "/\u00e9", "/%", "/%4", "/%4g", "/%zz", "/%00",
    "/%1f", "/%7f", "/%c2%85", "/%ff", "/%c3", "/a?%zz", "/a?b#c", "/a?[", "/a?%00",
    "http://", "http:///x", "http://[abc]/", "http://[::1/", "http://[::1]x/",
    "http://[::1]:/", "http://[]/", "http://[::1%25eth0]/", "http://[v1.x]/",
    "http://[1:2:3:4:5:6:7:8:9]/", "http://u@h/", "http://u:p@h/", "http://h:/",
    "http://h:0/", "http://h:65536/", "http://h:123456/", "http://h:8a/", "http://h:+80/",
    "http://h:\u0661/", "http://h_1/", "http://a..b/", "http://.a/", "http://a b/",
    "http://h:80:80/", "http://" + "a" * 254 + "/", "http://h/%zz", "http://h/a#b",
    "https://h/", "ftp://h/", "HTTPS://h/", "http:/h/", "http:h",
])
def test_targets_that_are_refused(target: str) -> None:
    with pytest.raises(HttpRefused) as info:
        parse_target("GET", target)
    assert info.value.status == 400 and info.value.label == "bad-target"


def test_star_is_only_for_options() -> None:
    for method in ("GET", "HEAD", "POST", "PUT", "DELETE", "options"):
        with pytest.raises(HttpRefused):
            parse_target(method, "*")


def test_request_takes_its_path_from_the_strict_parser() -> None:
    r = Request("GET", "http://hub.example:8080/blocks/ab/x?y=1", ())
    assert (r.path, dict(r.query), r.authority) == ("/blocks/ab/x", {"y": "1"}, "hub.example:8080")
    with pytest.raises(HttpRefused):
        Request("GET", "//[", ())


_PCHARS = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@"


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=_PCHARS + "/%?#[]{}|\\^`\"<> \t\x00\x7f\u00e9" + string.hexdigits,
               max_size=60),
       st.sampled_from(["/", "http://h", "http://[::1]:80", "*", ""]))
def test_any_target_is_parsed_or_refused_never_a_crash(tail: str, prefix: str) -> None:
    target = prefix + tail
    try:
        path, query, authority = parse_target("GET", target)
    except HttpRefused as exc:
        assert exc.status == 400
        return
    assert path.startswith("/")
    for text in (path, *query, *query.values()):
        assert not any(c < " " or "\x7f" <= c <= "\x9f" for c in text)
    assert (authority is None) == target.startswith("/")


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(st.text(alphabet=_PCHARS, max_size=8),
                          st.binary(min_size=1, max_size=3).map(
                              lambda b: "".join(f"%{x:02X}" for x in b))),
                max_size=8))
def test_valid_origin_form_decodes_as_urllib_would(segments: list[str]) -> None:
    # The oracle, for well-formed targets only: urllib's percent-decoding.
    target = "/" + "/".join(segments)
    oracle = unquote(target, errors="strict") if _utf8(target) else None
    try:
        path, _, _ = parse_target("GET", target)
    except HttpRefused:
        assert oracle is None or any(c < " " or "\x7f" <= c <= "\x9f" for c in oracle)
        return
    assert path == oracle


def _utf8(target: str) -> bool:
    try:
        unquote(target, errors="strict")
    except UnicodeDecodeError:
        return False
    return True


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["h", "hub.example", "127.0.0.1", "[::1]", "[2001:db8::5]", "a-b.c"]),
       st.one_of(st.none(), st.integers(1, 65535)),
       st.text(alphabet=_PCHARS + "/", max_size=20))
def test_valid_absolute_form_gives_its_authority_and_path(host: str, port: int | None,
                                                         path: str) -> None:
    authority = host if port is None else f"{host}:{port}"
    got = parse_target("GET", f"http://{authority}/{path}")
    assert got == ("/" + path, {}, authority)


# --- check_head --------------------------------------------------------------

H = b"POST / HTTP/1.1\r\nHost: x\r\n"


@pytest.mark.parametrize("head", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.1\nHost: x\n\n",
    H + b"Content-Length: 14\r\n\r\n",
    H + b"Transfer-Encoding: chunked\r\n\r\n",
    H + b"Transfer-Encoding: Chunked \r\n\r\n",
    H + b"X-Content-Length: 5\r\nContent-Length: 4\r\n\r\n",
    H + b"X-Note: content-length: 5, transfer-encoding: x\r\nContent-Length: 4\r\n\r\n",
    H + b"X-Tab: a\tb\r\nX-8bit: \xe9\xff\r\n\r\n",
])
def test_heads_that_are_served(head: bytes) -> None:
    check_head(head)


@pytest.mark.parametrize(("head", "status", "label"), [
    (H + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "bad-framing"),
    (H + b"Transfer-Encoding: chunked\r\ncontent-length: 3\r\n\r\n", 400, "bad-framing"),
    (H + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\n", 400, "bad-framing"),
    (H + b"Content-Length: 3, 3\r\n\r\n", 400, "bad-framing"),
    (H + b"Content-Length: 0x3\r\n\r\n", 400, "bad-framing"),
    (H + b"Transfer-Encoding: identity\r\n\r\n", 400, "bad-framing"),
    (H + b"Transfer-Encoding: chunked, identity\r\n\r\n", 400, "bad-framing"),
    (H + b"Transfer-Encoding: chunked, chunked\r\n\r\n", 400, "bad-framing"),
    (H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
     "bad-framing"),
    (H + b"Transfer-Encoding: xchunked\r\n\r\n", 400, "bad-framing"),
    (H + b"Transfer-Encoding: \r\n\r\n", 400, "bad-framing"),
    (H + b"Transfer-Encoding: gzip, chunked\r\n\r\n", 501, "unsupported"),
    (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "bad-framing"),
    (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, "unsupported"),
    (b"GET / HTTP/0.9\r\nHost: x\r\n\r\n", 505, "unsupported"),
    (H + b"X: a\r\n b\r\n\r\n", 400, "bad-head"),
    (H + b"X: a\n\tb\n\n", 400, "bad-head"),
    (H + b"X: a\x00b\r\n\r\n", 400, "bad-head"),
    (H + b"X: a\x01b\r\n\r\n", 400, "bad-head"),
    (H + b"X: a\x1fb\r\n\r\n", 400, "bad-head"),
    (H + b"X: a\x7fb\r\n\r\n", 400, "bad-head"),
    (H + b"X: a\x0bb\r\n\r\n", 400, "bad-head"),
])
def test_heads_that_are_refused(head: bytes, status: int, label: str) -> None:
    with pytest.raises(HttpRefused) as info:
        check_head(head)
    assert (info.value.status, info.value.label) == (status, label)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from([
    b"Host: x", b"Content-Length: 3", b"Content-Length: 3, 3", b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: gzip", b"X: a", b" folded", b"\tfolded", b"X: \x01", b"X: \xff",
    b"content-length:3", b"TRANSFER-ENCODING: CHUNKED",
]), max_size=6), st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]))
def test_check_head_agrees_with_h11_and_refuses_what_h11_lets_through(
        lines: list[bytes], version: bytes) -> None:
    head = b"POST / " + version + b"\r\n" + b"".join(x + b"\r\n" for x in lines) + b"\r\n"
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(head)
    try:
        h11_accepts = isinstance(conn.next_event(), h11.Request)
    except h11.RemoteProtocolError:
        h11_accepts = False
    try:
        check_head(head)
        ours = True
    except HttpRefused:
        ours = False
    low = head.lower()
    smuggle = (b"content-length" in low and b"transfer-encoding" in low) or \
        low.count(b"content-length") > 1 or b"3, 3" in low
    folded = b"\n " in head or b"\n\t" in head
    control = b"\x01" in head
    te10 = b"transfer-encoding" in low and version == b"HTTP/1.0"
    if h11_accepts:
        assert ours == (not (smuggle or folded or control or te10)), head


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=40).map(lambda b: b.replace(b"a", b"\n").replace(b"b", b"\r")))
def test_head_end_finds_the_blank_line_as_h11_does(buf: bytes) -> None:
    m = re.search(b"\n\r?\n", buf)  # h11's blank_line_regex
    assert head_end(buf) == (m.end() if m else -1)
