"""Netlink's framing: round trips, every truncation, padding, trailing bytes, hostile lengths."""

from __future__ import annotations

import struct
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zosnode.net import nlwire as w
from zosnode.net.errors import PacketError


def two_messages() -> bytes:
    body = w.strz(3, "eth0") + w.attr(1, bytes(6)) + w.nest(18, w.strz(1, "veth"))
    return w.message(16, 2, 7, bytes(16) + body) + \
        w.message(w.NLMSG_DONE, 2, 7, bytes(4))


def test_round_trip_whole() -> None:
    got = w.parse(two_messages())
    assert [(m.kind, m.seq) for m in got] == [(16, 7), (w.NLMSG_DONE, 7)]
    a = w.attrs(got[0].payload[16:])
    assert w.text(a[3]) == "eth0" and a[1] == bytes(6)
    assert w.text(w.attrs(a[18])[1]) == "veth"  # the nested flag cleared from the type
    assert w.text(None) is None


def test_attribute_padding_and_order() -> None:
    raw = w.attr(1, b"abc") + w.u32(2, 5) + w.u32(3, 5, "big") + w.attr(1, b"second")
    assert len(w.attr(1, b"abc")) == 8  # 4 + 3, padded to 8
    a = w.attrs(raw)
    assert a == {1: b"abc", 2: (5).to_bytes(4, sys.byteorder), 3: b"\0\0\0\5"}  # first wins
    assert w.attrs(b"") == {}


def test_every_truncation_is_refused_or_whole() -> None:
    data = two_messages()
    ends = {0, len(w.parse(data)[0].payload) + 16, len(data)}
    for n in range(len(data) + 1):
        if n in ends:
            w.parse(data[:n])
        else:
            with pytest.raises(PacketError):
                w.parse(data[:n])
    raw = w.strz(3, "eth0") + w.attr(1, bytes(6))  # 9 bytes padded to 12, then 10 to 12
    whole = {0, 9, 10, 11, 12, 22, 23, 24}  # a cut only in the last attribute's padding
    for n in range(len(raw) + 1):
        if n in whole:
            assert len(w.attrs(raw[:n])) == (n > 12) + (n > 0)
        else:
            with pytest.raises(PacketError):
                w.attrs(raw[:n])


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(PacketError, match="less than a message header"):
        w.parse(two_messages() + b"\0" * 5)
    with pytest.raises(PacketError, match="less than a attribute header"):
        w.attrs(w.attr(1, b"abcd") + b"\0\0")


def test_hostile_lengths() -> None:
    head = struct.Struct("=IHHII")
    for size in (0, 15, 1 << 31):
        with pytest.raises(PacketError, match="overruns"):
            w.parse(head.pack(size, 16, 0, 1, 0) + bytes(64))
    for size in (0, 3, 200):
        with pytest.raises(PacketError, match="overruns"):
            w.attrs(struct.pack("=HH", size, 1) + bytes(8))


def test_error_messages() -> None:
    ack = w.parse(w.message(w.NLMSG_ERROR, 0, 3, (0).to_bytes(4, sys.byteorder, signed=True)
                            + bytes(16)))[0]
    refused = w.parse(w.message(w.NLMSG_ERROR, 0, 3, (-101).to_bytes(4, sys.byteorder,
                                                                   signed=True)))[0]
    assert w.error_of(ack) == 0 and w.error_of(refused) == 101
    with pytest.raises(PacketError):
        w.error_of(w.NetlinkMessage(w.NLMSG_ERROR, 0, 3, b"\0\0"))


@given(st.binary(max_size=600))
def test_parse_fuzz(data: bytes) -> None:
    """Any bytes: messages within the buffer, or PacketError; never another exception."""
    try:
        got = w.parse(data)
    except PacketError:
        return
    assert sum(16 + len(m.payload) for m in got) <= len(data)


@given(st.binary(max_size=400))
def test_attrs_fuzz(data: bytes) -> None:
    try:
        a = w.attrs(data)
    except PacketError:
        return
    assert all(0 <= k <= 0x3FFF and len(v) <= len(data) for k, v in a.items())
