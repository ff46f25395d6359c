"""The hub's pure cores: ranges, conditionals, SigV4, request signing, replays.

(Its static paths are the shared layout's: tests/foundation/test_layout.py.)
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.hub.releases import key
from zosnode.http.errors import HttpUsageError
from zosnode.http.messages import FileBody, Request, Response
from zosnode.http.semantics import apply, etag_matches, parse_range
from zosnode.hub.replay import ReplayCache
from zosnode.hub.sigv4 import EMPTY_SHA256, Credentials, authorization
from zosnode.wire.errors import WireRefused, WireUsageError
from zosnode.wire.publish_auth import sign_request, verify_request


@pytest.mark.parametrize("header, size, expected", [
    ("bytes=0-0", 10, (0, 1)),
    ("bytes=0-9", 10, (0, 10)),
    ("bytes=0-99", 10, (0, 10)),
    ("bytes=3-", 10, (3, 7)),
    ("bytes=-3", 10, (7, 3)),
    ("bytes=-30", 10, (0, 10)),
    ("bytes=10-", 10, "unsatisfiable"),
    ("bytes=10-20", 10, "unsatisfiable"),
    ("bytes=-0", 10, "unsatisfiable"),
    ("bytes=0-", 0, "unsatisfiable"),
    ("bytes=5-3", 10, None),
    ("bytes=0-1,3-4", 10, None),
    ("items=0-1", 10, None),
    ("bytes=-", 10, None),
    ("bytes=a-b", 10, None),
    ("bytes 0-1", 10, None),
    ("bytes=٣-", 10, None),  # a non-ASCII digit
    ("bytes=" + "9" * 40 + "-", 10, None),
])
def test_parse_range(header: str, size: int, expected: object) -> None:
    assert parse_range(header, size) == expected


@given(st.integers(0, 300), st.integers(0, 400), st.one_of(st.none(), st.integers(0, 400)))
def test_parse_range_matches_slicing(size: int, first: int, last: int | None) -> None:
    spec = f"bytes={first}-" + ("" if last is None else str(last))
    got = parse_range(spec, size)
    if last is not None and last < first:
        assert got is None
    elif first >= size:
        assert got == "unsatisfiable"
    else:
        data = bytes(range(256)) * 2
        end = size - 1 if last is None else min(last, size - 1)
        assert isinstance(got, tuple)
        start, length = got
        assert data[:size][start:start + length] == data[:size][first:end + 1]


def test_etag_matching() -> None:
    assert etag_matches('"a"', '"a"')
    assert etag_matches('"b", "a"', '"a"')
    assert etag_matches('W/"a"', '"a"')
    assert etag_matches("*", '"a"')
    assert not etag_matches('"ab"', '"a"')


def test_apply_if_range_and_methods() -> None:
    body = b"0123456789"
    resp = Response(200, (("etag", '"x"'),), body, ranges=True)

    def req(method: str = "GET", **h: str) -> Request:
        return Request(method, "/", tuple((k.replace("_", "-"), v) for k, v in h.items()))

    assert apply(req(range="bytes=2-3"), resp).body == b"23"
    assert apply(req(range="bytes=2-3", if_range='"x"'), resp).status == 206
    assert apply(req(range="bytes=2-3", if_range='"old"'), resp).status == 200
    assert apply(req("PUT", if_none_match='"x"'), resp).status == 200
    assert apply(req(if_none_match='"x"', range="bytes=0-1"), resp).status == 304
    no_ranges = Response(200, (), body)
    assert apply(req(range="bytes=2-3"), no_ranges).status == 200
    fb = Response(200, (), FileBody("/x", 100, 50), ranges=True)
    out = apply(req(range="bytes=10-19"), fb)
    assert out.body == FileBody("/x", 110, 10)


def test_messages_refuse_invalid_construction() -> None:
    with pytest.raises(HttpUsageError):
        Response(99)
    with pytest.raises(HttpUsageError):
        Response(200, (("x-a", "b\r\nevil: 1"),))
    with pytest.raises(HttpUsageError):
        Response(200, (("content-length", "5"),))
    with pytest.raises(HttpUsageError):
        FileBody("/x", 0, 10).slice(5, 6)
    assert Request("GET", "/a%20b?x=1", ()).path == "/a b"


def test_sigv4_matches_aws_published_examples() -> None:
    # The GET Object and ListObjects examples of AWS's SigV4 documentation.
    creds = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    date = "20130524T000000Z"
    host = "examplebucket.s3.amazonaws.com"
    get = authorization(creds, "GET", "/test.txt", {},
                        {"host": host, "range": "bytes=0-9",
                         "x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": date},
                        EMPTY_SHA256, date)
    assert get.endswith(
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    listing = authorization(creds, "GET", "/", {"max-keys": "2", "prefix": "J"},
                            {"host": host, "x-amz-content-sha256": EMPTY_SHA256,
                             "x-amz-date": date}, EMPTY_SHA256, date)
    assert listing.endswith(
        "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7")


PUB = key("publisher")
PUB_ID = PUB.verify_key.encode().hex()


def _verify(headers: tuple[tuple[str, str], ...], *, method: str = "PUT",
            target: str = "/blocks/aa/x", body: bytes = b"body", now: int = 1000) -> str:
    hd = dict(headers)
    return verify_request(method, target, body, hd.get, allowed={PUB_ID}, now=now).publisher


def test_publish_signature_binds_every_field() -> None:
    h = sign_request(PUB, "PUT", "/blocks/aa/x", b"body", now=1000, nonce="0" * 32)
    assert _verify(h) == PUB_ID
    for change in [dict(method="POST"), dict(target="/blocks/aa/y"), dict(body=b"bodY"),
                   dict(now=1000 + 301), dict(now=1000 - 301)]:
        with pytest.raises(WireRefused):
            _verify(h, **change)  # type: ignore[arg-type]
    for i, (name, value) in enumerate(h):
        flipped = value[:-1] + ("1" if value[-1] != "1" else "2")
        tampered = h[:i] + ((name, flipped),) + h[i + 1:]
        with pytest.raises(WireRefused):
            _verify(tampered)
        with pytest.raises(WireRefused):
            _verify(h[:i] + h[i + 1:])
    with pytest.raises(WireUsageError):
        sign_request(PUB, "PUT", "/x", b"", now=1, nonce="short")


def test_replay_cache_window_and_bound() -> None:
    cache = ReplayCache(window_s=300, max_entries=3)
    assert cache.accept("p", "n1", 1000, 1000)
    assert not cache.accept("p", "n1", 1000, 1100)
    assert cache.accept("q", "n1", 1000, 1100)
    assert cache.accept("p", "n2", 1000, 1100)
    assert not cache.accept("p", "n3", 1000, 1100)  # full of live nonces: fail closed
    # Past the window the old nonces are forgotten; the timestamp check
    # refuses those requests anyway.
    assert cache.accept("p", "n3", 1301, 1301)
    assert len(cache) == 1
