"""The agent/mount-child protocol, byte by byte (zosnode.mount.protocol, pure)."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zosnode.mount.errors import ProtocolRefused, ProtocolUsageError
from zosnode.mount.protocol import (
    MAX_MESSAGE,
    MAX_REPORT,
    MAX_REQUEST,
    CacheCounts,
    Failure,
    FailureKind,
    MountRequest,
    Ready,
    Report,
    ReportReader,
    decode_request,
    encode_report,
    encode_request,
)

FID = "ab" * 32


def request(**kw: object) -> MountRequest:
    fields: dict[str, object] = dict(
        flist=b"\x01flist", mountpoint="/run/zosnode/1/os", hubs=("http://127.0.0.1:8080",),
        cache_dir="/run/zosnode/blocks", cache_bytes=1 << 20, durable=False,
        block_deadline_ms=30_000, hot_bytes=1 << 20, prefetch=True,
    )
    fields.update(kw)
    return MountRequest(**fields)  # type: ignore[arg-type]


def frame(value: object) -> bytes:
    payload = cbor2.dumps(value, canonical=True)
    return len(payload).to_bytes(4, "big") + payload


def test_ready_frame_bytes() -> None:
    # RFC 8949 deterministic map order: "type" (0x64...) sorts before "flist_id" (0x68...).
    payload = (b"\xa2" + b"\x64type" + b"\x65ready"
               + b"\x68flist_id" + b"\x78\x40" + FID.encode())
    assert encode_report(Ready(FID)) == len(payload).to_bytes(4, "big") + payload
    assert len(payload) == 87


def test_failure_frame_bytes() -> None:
    payload = (b"\xa3" + b"\x64kind" + b"\x65flist" + b"\x64type" + b"\x67failure"
               + b"\x67message" + b"\x63bad")
    assert encode_report(Failure(FailureKind.FLIST, "bad")) == b"\x00\x00\x00\x25" + payload


def test_request_round_trip() -> None:
    req = request(hubs=("http://a:1", "https://b/x"), durable=True, prefetch=False)
    assert decode_request(encode_request(req)) == req


def test_request_truncated_at_every_byte_is_refused() -> None:
    data = encode_request(request())
    for cut in range(len(data)):
        with pytest.raises(ProtocolRefused, match="truncated"):
            decode_request(data[:cut])


def test_request_with_trailing_bytes_is_refused() -> None:
    data = encode_request(request())
    for extra in (b"\x00", b"x" * 10, data):
        with pytest.raises(ProtocolRefused, match="after the frame"):
            decode_request(data + extra)


def test_request_over_the_cap_is_refused_from_its_header() -> None:
    with pytest.raises(ProtocolRefused, match="over the"):
        decode_request((MAX_REQUEST + 1).to_bytes(4, "big"))


def _request_map() -> dict[str, object]:
    return {"type": "mount", "v": 1, "flist": b"f", "mountpoint": "/m", "hubs": ["http://h"],
            "cache_dir": "/c", "cache_bytes": 1, "durable": False, "block_deadline_ms": 1,
            "hot_bytes": 1, "prefetch": True}


@pytest.mark.parametrize("change", [
    {"v": 2},
    {"type": "ready"},
    {"extra": 1},
    {"cache_bytes": True},  # a CBOR true is not a number
    {"cache_bytes": 0},
    {"durable": 1},
    {"hubs": "http://h"},
    {"hubs": []},
    {"hubs": ["ftp://h"]},
    {"mountpoint": "relative"},
    {"flist": b""},
    {"flist": "text"},
])
def test_request_fields_are_checked(change: dict[str, object]) -> None:
    value = _request_map()
    assert decode_request(frame(value)).mountpoint == "/m"
    value.update(change)
    with pytest.raises(ProtocolRefused):
        decode_request(frame(value))


def test_request_missing_field_is_refused() -> None:
    value = _request_map()
    del value["hot_bytes"]
    with pytest.raises(ProtocolRefused, match="fields"):
        decode_request(frame(value))


def test_non_canonical_encoding_is_refused() -> None:
    value = _request_map()
    payload = cbor2.dumps(dict(reversed(list(value.items()))))  # keys out of order
    assert payload != cbor2.dumps(value, canonical=True)
    with pytest.raises(ProtocolRefused, match="canonical"):
        decode_request(len(payload).to_bytes(4, "big") + payload)


@pytest.mark.parametrize("kw", [
    {"mountpoint": "rel/ative"}, {"cache_dir": "/a\0b"}, {"hubs": ()},
    {"hubs": ["http://h"]},  # a list, not a tuple: frozen means frozen
    {"hubs": ("not a url",)}, {"cache_bytes": 0}, {"hot_bytes": -1},
    {"block_deadline_ms": True}, {"durable": "yes"}, {"flist": b""},
])
def test_building_an_invalid_request_is_our_bug(kw: dict[str, object]) -> None:
    with pytest.raises(ProtocolUsageError):
        request(**kw)


def test_building_invalid_reports_is_our_bug() -> None:
    with pytest.raises(ProtocolUsageError):
        Ready("AB" * 32)
    with pytest.raises(ProtocolUsageError):
        Failure(FailureKind.FUSE, "x" * (MAX_MESSAGE + 1))
    with pytest.raises(ProtocolUsageError):
        Failure("fuse", "x")  # type: ignore[arg-type]
    cut = Failure.of(FailureKind.FUSE, "a\nb  " + "x" * 2 * MAX_MESSAGE)
    assert cut.message.startswith("a b x") and len(cut.message) == MAX_MESSAGE


def test_reader_byte_by_byte() -> None:
    data = encode_report(Ready(FID)) + encode_report(Failure(FailureKind.UNMOUNTED, "gone"))
    reader = ReportReader()
    got = []
    for i in range(len(data)):
        got += reader.feed(data[i:i + 1])
        if i < len(encode_report(Ready(FID))) - 1:
            assert got == []
    reader.eof()
    assert got == [Ready(FID), Failure(FailureKind.UNMOUNTED, "gone")]
    assert reader.ready and reader.failed


def test_reader_refuses_a_frame_cut_by_eof() -> None:
    data = encode_report(Failure(FailureKind.CACHE, "full"))
    for cut in range(1, len(data)):
        reader = ReportReader()
        assert reader.feed(data[:cut]) == []
        with pytest.raises(ProtocolRefused, match="truncated"):
            reader.eof()
    ReportReader().eof()  # nothing sent at all is not a protocol error (the caller decides)


@pytest.mark.parametrize("reports", [
    [Ready(FID), Ready(FID)],
    [Failure(FailureKind.FLIST, "x"), Ready(FID)],
    [Failure(FailureKind.FLIST, "x"), Failure(FailureKind.FLIST, "x")],
    [CacheCounts(1, 0, 0, 0, 0, 0), Ready(FID)],  # counts only once the mount serves
    [Ready(FID), Failure(FailureKind.UNMOUNTED, "x"), CacheCounts(1, 0, 0, 0, 0, 0)],
])
def test_reader_refuses_out_of_order_reports(reports: list[Report]) -> None:
    reader = ReportReader()
    data = b"".join(encode_report(r) for r in reports)
    with pytest.raises(ProtocolRefused):
        reader.feed(data)
    with pytest.raises(ProtocolRefused):  # and stays refused
        reader.feed(b"")


def test_reader_refuses_trailing_garbage_after_failure() -> None:
    reader = ReportReader()
    assert reader.feed(encode_report(Failure(FailureKind.FUSE, "no"))) == [
        Failure(FailureKind.FUSE, "no")]
    with pytest.raises(ProtocolRefused):
        reader.feed(encode_report(Ready(FID)))


@pytest.mark.parametrize("value", [
    {"type": "failure", "kind": "disk", "message": "x"},
    {"type": "failure", "kind": "fuse"},
    {"type": "failure", "kind": "fuse", "message": "x", "extra": 1},
    {"type": "ready", "flist_id": "zz"},
    {"type": "ready", "flist_id": 1},
    {"type": "hello"},
    {"type": "counts", "hits": 1, "misses": 0, "fetches": 0, "corrupt": 0,
     "write_errors": 0},
    {"type": "counts", "hits": -1, "misses": 0, "fetches": 0, "corrupt": 0,
     "write_errors": 0, "discarded": 0},
    {"type": "counts", "hits": True, "misses": 0, "fetches": 0, "corrupt": 0,
     "write_errors": 0, "discarded": 0},
    ["ready"],
    "ready",
])
def test_reader_refuses_malformed_reports(value: object) -> None:
    with pytest.raises(ProtocolRefused):
        ReportReader().feed(frame(value))


def test_reader_refuses_an_oversize_header_before_the_body() -> None:
    with pytest.raises(ProtocolRefused, match="over the"):
        ReportReader().feed((MAX_REPORT + 1).to_bytes(4, "big"))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(1, 16))
def test_reader_on_noise_only_refuses(noise: bytes, step: int) -> None:
    reader = ReportReader()
    try:
        for i in range(0, len(noise), step):
            for report in reader.feed(noise[i:i + step]):
                assert isinstance(report, (Ready, Failure))
        reader.eof()
    except ProtocolRefused:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_request_decoder_on_noise_only_refuses(noise: bytes) -> None:
    try:
        decode_request(noise)
    except ProtocolRefused:
        pass


def test_cache_counts_follow_ready_any_number_of_times() -> None:
    counts = [CacheCounts(1, 2, 2, 0, 0, 0), CacheCounts(9, 2, 2, 1, 1, 1)]
    reports: list[Report] = [Ready(FID), *counts, Failure(FailureKind.UNMOUNTED, "gone")]
    data = b"".join(encode_report(r) for r in reports)
    assert ReportReader().feed(data) == [Ready(FID), *counts,
                                         Failure(FailureKind.UNMOUNTED, "gone")]
    with pytest.raises(ProtocolUsageError):
        CacheCounts(0, 0, 0, 0, 0, 2**63)
