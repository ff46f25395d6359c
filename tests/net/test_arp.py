"""The RFC 5227 probe's decision logic, without sockets: timing, conflicts, our own echo."""

from __future__ import annotations

import random

import pytest

from zosnode.net import arp
from zosnode.net.errors import NetUsageError

MAC = bytes.fromhex("525400abcdef")
OTHER = bytes.fromhex("02aabbccddee")
ADDR = "10.9.0.50"
IP = bytes([10, 9, 0, 50])


def run_silent(probe: arp.ArpProbe) -> list[tuple[float, bytes]]:
    """Drive the probe with nobody answering; the frames it sends, when."""
    out: list[tuple[float, bytes]] = []
    while probe.verdict is None:
        assert probe.deadline is not None
        now = probe.deadline
        out += [(now, f) for f in probe.timeout(now)]
    return out


def test_probes_have_zero_sender_ip_and_the_rfc_shape_scaled_down() -> None:
    for seed in range(20):
        probe = arp.ArpProbe(MAC, ADDR, random.Random(seed), 100.0)
        assert probe.deadline is not None and 100.0 <= probe.deadline <= 100.0 + arp.PROBE_WAIT
        assert probe.timeout(99.0) == []  # too early: nothing yet
        frames = run_silent(probe)
        assert probe.verdict == arp.Clear(3) and len(frames) == arp.PROBE_NUM
        times = [when for when, _ in frames]
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert all(arp.PROBE_MIN <= g <= arp.PROBE_MAX for g in gaps)
        for _, frame in frames:
            p = arp.decode(frame)
            assert p == arp.Packet(arp.REQUEST, MAC, bytes(4), bytes(6), IP)
        # the longest probe
        total = arp.PROBE_WAIT + (arp.PROBE_NUM - 1) * arp.PROBE_MAX + arp.ANNOUNCE_WAIT
        assert total == pytest.approx(0.7)  # RFC 5227's 7 s, scaled by 1/10


def test_a_reply_from_the_holder_is_a_conflict() -> None:
    probe = arp.ArpProbe(MAC, ADDR, random.Random(1), 0.0)
    probe.timeout(probe.deadline or 0)
    reply = arp.encode(arp.Packet(arp.REPLY, OTHER, IP, MAC, bytes(4)))
    probe.receive(reply + bytes(18), 0.05)  # Ethernet padding is fine
    assert probe.verdict == arp.Conflict(OTHER, "ARP reply")
    assert probe.verdict.describe() == "in use by 02:aa:bb:cc:dd:ee (ARP reply)"
    assert probe.timeout(10.0) == [] and probe.deadline is None


def test_any_arp_with_our_address_as_sender_is_a_conflict() -> None:
    probe = arp.ArpProbe(MAC, ADDR, random.Random(1), 0.0)
    probe.receive(arp.encode(arp.Packet(arp.REQUEST, OTHER, IP, bytes(6),
                                        bytes([10, 9, 0, 1]))), 0.0)
    assert probe.verdict == arp.Conflict(OTHER, "ARP request")


def test_another_host_probing_for_the_same_address_is_a_conflict() -> None:
    probe = arp.ArpProbe(MAC, ADDR, random.Random(1), 0.0)
    probe.receive(arp.encode(arp.Packet(arp.REQUEST, OTHER, bytes(4), bytes(6), IP)), 0.0)
    assert probe.verdict == arp.Conflict(OTHER, "another host probing for it")


def test_our_own_probe_and_unrelated_traffic_are_not_conflicts() -> None:
    probe = arp.ArpProbe(MAC, ADDR, random.Random(1), 0.0)
    (frame,) = probe.timeout(probe.deadline or 0)
    probe.receive(frame, 0.01)  # our own probe, looped back
    unrelated = [
        arp.encode(arp.Packet(arp.REQUEST, OTHER, bytes([10, 9, 0, 7]), bytes(6),
                              bytes([10, 9, 0, 1]))),
        arp.encode(arp.Packet(arp.REPLY, OTHER, bytes([10, 9, 0, 1]), MAC, IP)),
        arp.encode(arp.Packet(arp.REQUEST, MAC, IP, bytes(6), bytes([10, 9, 0, 1]))),
        b"", b"\x00" * 27, b"\x00\x06" + bytes(26),  # not Ethernet/IPv4 ARP
        frame[:6] + b"\x00\x09" + frame[8:],  # unknown opcode
    ]
    for f in unrelated:
        probe.receive(f, 0.02)
    assert probe.verdict is None
    run_silent(probe)
    assert probe.verdict == arp.Clear(3)


def test_a_late_answer_changes_nothing() -> None:
    probe = arp.ArpProbe(MAC, ADDR, random.Random(2), 0.0)
    run_silent(probe)
    probe.receive(arp.encode(arp.Packet(arp.REPLY, OTHER, IP, MAC, bytes(4))), 5.0)
    assert probe.verdict == arp.Clear(3)


def test_bad_mac_is_our_error() -> None:
    with pytest.raises(NetUsageError):
        arp.ArpProbe(b"\x01", ADDR, random.Random(0), 0.0)
