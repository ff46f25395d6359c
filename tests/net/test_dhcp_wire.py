"""The DHCP codec: round trips, every truncation, trailing padding, hostile options."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zosnode.net import dhcp_wire as w
from zosnode.net.errors import NetUsageError, PacketError

MAC = bytes.fromhex("525400123456")


def reply(options: tuple[tuple[int, bytes], ...] = ((53, b"\x02"), (54, bytes([10, 0, 0, 1])))
          ) -> w.Message:
    return w.Message(op=w.BOOTREPLY, xid=7, chaddr=MAC, options=options, yiaddr="10.0.0.5")


def test_round_trip_whole() -> None:
    m = reply()
    data = w.encode(m)
    assert len(data) == 300  # padded to the BOOTP minimum
    assert w.decode(data) == m
    assert w.decode(data).msg_type is w.MsgType.OFFER
    assert w.decode(data).addr(54) == "10.0.0.1"


def test_every_truncation_is_refused() -> None:
    m = reply(((53, b"\x02"), (54, bytes(4)), (51, b"\x00\x00\x00\x78"), (3, bytes(8))))
    data = w.encode(m)
    end = data.rindex(b"\xff")  # END of the options
    for n in range(end + 1):
        with pytest.raises(PacketError):
            w.decode(data[:n])
    assert w.decode(data[: end + 1]) == m


def test_trailing_padding_and_data_after_end() -> None:
    data = w.encode(reply())
    assert w.decode(data + bytes(100)).options == reply().options
    assert w.decode(data + b"junk after END").options == reply().options


def test_oversized_refused() -> None:
    with pytest.raises(PacketError, match="exceeds"):
        w.decode(w.encode(reply()) + bytes(w.MAX_MESSAGE))


def test_bad_cookie_op_htype() -> None:
    data = bytearray(w.encode(reply()))
    for offset, value in ((236, 0), (0, 9), (1, 6), (2, 16)):
        bad = bytearray(data)
        bad[offset] = value
        with pytest.raises(PacketError):
            w.decode(bytes(bad))


def test_option_overrunning_the_packet() -> None:
    data = bytearray(w.encode(reply()))[:240] + bytes([53, 1, 2, 3, 200, 1, 2])
    with pytest.raises(PacketError, match="runs past"):
        w.decode(bytes(data))
    with pytest.raises(PacketError, match="no length"):
        w.decode(bytes(data[:240] + bytes([53])))
    with pytest.raises(PacketError, match="no END"):
        w.decode(bytes(data[:240] + bytes([53, 1, 2])))


def test_overload_reads_file_then_sname() -> None:
    data = bytearray(w.encode(reply(((53, b"\x05"), (52, b"\x03")))))
    data[108:112] = bytes([51, 2, 1, 2])  # file field
    data[112] = 255
    data[44:48] = bytes([12, 1, 65, 255])  # sname field: hostname "A"
    m = w.decode(bytes(data))
    assert m.get(51) == b"\x01\x02" and m.get(12) == b"A"
    data[112] = 0  # file region without END
    with pytest.raises(PacketError, match="file"):
        w.decode(bytes(data))


def test_bad_overload_values() -> None:
    for value in (b"\x04", b"\x01\x01", b""):
        with pytest.raises(PacketError, match="overload"):
            w.decode(w.encode(reply(((53, b"\x05"), (52, value)))))


def test_repeated_options_are_concatenated() -> None:
    m = w.decode(w.encode(reply(((3, bytes([1, 2, 3, 4])), (3, bytes([5, 6, 7, 8]))))))
    assert m.get(3) == bytes([1, 2, 3, 4, 5, 6, 7, 8])
    # ...which makes a duplicated fixed-size option unusable rather than ambiguous.
    m = w.decode(w.encode(reply(((54, bytes(4)), (54, bytes(4))))))
    assert m.get(54) == bytes(8) and m.addr(54) is None


def test_building_bad_messages_is_our_error() -> None:
    with pytest.raises(NetUsageError):
        w.Message(op=3, xid=1, chaddr=MAC, options=())
    with pytest.raises(NetUsageError):
        w.Message(op=1, xid=1, chaddr=b"short", options=())
    with pytest.raises(NetUsageError):
        w.Message(op=1, xid=1, chaddr=MAC, options=((0, b""),))
    with pytest.raises(NetUsageError):
        w.Message(op=1, xid=1, chaddr=MAC, options=((12, bytes(256)),))


@given(st.binary(max_size=700))
def test_random_bytes_never_crash(data: bytes) -> None:
    try:
        w.decode(data)
    except PacketError:
        pass


@given(st.binary(min_size=1, max_size=400))
def test_random_options_never_crash(tail: bytes) -> None:
    try:
        m = w.decode(w.encode(reply())[:240] + tail)
    except PacketError:
        return
    m.msg_type, m.addr(54), m.get(3)  # accessors must not raise either


def test_classless_routes_strict() -> None:
    raw = bytes([0, 10, 0, 0, 1, 24, 192, 168, 5, 10, 0, 0, 1, 32, 10, 0, 0, 1, 0, 0, 0, 0])
    assert w.classless_routes(raw) == (w.Route("0.0.0.0/0", "10.0.0.1"),
                                       w.Route("192.168.5.0/24", "10.0.0.1"),
                                       w.Route("10.0.0.1/32", None))
    for bad, why in ((b"", "at least 5"), (bytes([33]) + bytes(8), "width 33"),
                     (raw[:-1], "runs past"), (bytes([9, 10, 64, 10, 0, 0, 1]), "host bits"),
                     (bytes([8, 10, 10, 0, 0]), "runs past")):
        with pytest.raises(PacketError, match=why):
            w.classless_routes(bad)


def test_domain_search_compression_and_hostile_pointers() -> None:
    raw = b"\x03eng\x07example\x03com\x00\x03ops\xc0\x04\xc0\x00"
    assert w.domain_search(raw) == ("eng.example.com", "ops.example.com", "eng.example.com")
    for bad, why in ((b"\x03abc\xc0\x00", "backwards"),  # points at itself: a loop
                     (b"\xc0\x05", "backwards"), (b"\x03ab", "runs past"),
                     (b"\x03abc", "runs past"), (b"\x03abc\xc0", "cut short"),
                     (b"\x41abc\x00", "label type"),
                     ((b"\x3f" + b"a" * 63) * 4 + b"\x05aaaaa\x00", "255 bytes")):
        with pytest.raises(PacketError, match=why):
            w.domain_search(bad)


def test_peek_reads_xid_and_chaddr_of_a_broken_reply() -> None:
    data = w.encode(reply())
    assert w.peek(data[:240]) == (7, MAC)
    assert w.peek(data[:100]) is None
    assert w.peek(b"\x01" + data[1:]) is None  # a request
