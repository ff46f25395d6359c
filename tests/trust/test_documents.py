"""Roots, manifests and envelopes: round trips, and the parsers tested whole."""

from __future__ import annotations

import dataclasses

import pytest

from tests.trust.repo_sim import NOW, RepoSim, key
from zosnode import canonical
from zosnode.trust import envelope
from zosnode.trust.errors import MalformedError, TrustError, TrustUsageError
from zosnode.trust.manifest import FlistPin, ServiceSpec
from zosnode.trust.manifest import decode_body as decode_manifest
from zosnode.trust.root import decode_body as decode_root
from zosnode.trust.signing import (
    encode_anchor,
    encode_envelope,
    encode_manifest,
    encode_root,
    key_id,
    make_root,
)


def test_manifest_round_trips_exactly() -> None:
    m = RepoSim().manifest()
    body = encode_manifest(m)
    assert decode_manifest(body) == m
    assert encode_manifest(decode_manifest(body)) == body


def test_root_round_trips_exactly() -> None:
    r = make_root(3, NOW, 2, [key_id(key(str(i))) for i in range(3)], manifest_floor=7)
    assert decode_root(encode_root(r)) == r


def test_envelope_round_trips_and_signatures_sort_by_key() -> None:
    sim = RepoSim()
    data = sim.signed_manifest(signers=list(reversed(sim.keys)))
    env = envelope.decode(data, max_size=1 << 20, kind="manifest")
    assert [s.keyid for s in env.signatures] == sorted(key_id(k) for k in sim.keys)
    assert encode_envelope(env) == data


def test_parsers_refuse_every_truncation_and_trailing_data() -> None:
    sim = RepoSim()
    data = sim.signed_manifest()
    body = encode_manifest(sim.manifest())
    for cut in range(len(data)):
        with pytest.raises(MalformedError):
            envelope.decode(data[:cut], max_size=1 << 20, kind="manifest")
    for cut in range(len(body)):
        with pytest.raises(MalformedError):
            decode_manifest(body[:cut])
    with pytest.raises(MalformedError, match="not canonical"):
        envelope.decode(data + b"\x00", max_size=1 << 20, kind="manifest")
    with pytest.raises(MalformedError, match="not canonical"):
        decode_manifest(body + b"\x00")


def test_kind_confusion_is_refused() -> None:
    sim = RepoSim()
    with pytest.raises(MalformedError, match="expected a manifest"):
        envelope.decode(sim.root_bytes, max_size=1 << 20, kind="manifest")


@pytest.mark.parametrize(
    "build",
    [
        lambda: FlistPin("base", "ab" * 32, 0, "/opt/base"),
        lambda: FlistPin("base", "AB" * 32, 10, "/opt/base"),
        lambda: FlistPin("base", "ab" * 32, 10, "/opt/../etc"),
        lambda: FlistPin("Base", "ab" * 32, 10, "/opt/base"),
        lambda: ServiceSpec("web", "app", ()),
        lambda: ServiceSpec("web", "app", ("/x",), stop_signal="SIGSTOP"),
        lambda: ServiceSpec("web", "app", ("/x",), restart_initial_ms=5, restart_max_ms=1),
        lambda: ServiceSpec("web", "app", ("/x",), env={"A=B": "c"}),
        lambda: RepoSim().manifest(rollout_ppm=1_000_001),
        lambda: RepoSim().manifest(expires_at=NOW - 10 * 86_400),
        lambda: RepoSim().manifest(hubs=("ftp://x",)),
        lambda: RepoSim().manifest(metadata={"x": 1.5}),
        lambda: RepoSim().manifest(metadata={"blob": "x" * 20_000}),
        lambda: RepoSim().manifest(min_agent_version="one"),
        lambda: make_root(1, NOW, 4, [key_id(key(str(i))) for i in range(3)]),
    ],
)
def test_invalid_values_are_our_mistake_when_built(build: object) -> None:
    with pytest.raises(TrustUsageError):
        build()  # type: ignore[operator]


def test_service_graph_is_checked() -> None:
    sim = RepoSim()
    m = sim.manifest()
    a = ServiceSpec("a", "base", ("/a",), after=("b",))
    b = ServiceSpec("b", "base", ("/b",), after=("a",))
    with pytest.raises(TrustUsageError, match="cycle"):
        dataclasses.replace(m, services=(a, b))
    with pytest.raises(TrustUsageError, match="unknown service"):
        dataclasses.replace(m, services=(a,))
    with pytest.raises(TrustUsageError, match="not pinned"):
        dataclasses.replace(m, services=(ServiceSpec("c", "nope", ("/c",)),))


def test_peer_values_that_fail_validation_are_malformed_not_usage() -> None:
    body = canonical.loads(encode_manifest(RepoSim().manifest()), max_size=1 << 20)
    body["rollout_ppm"] = 2_000_000
    with pytest.raises(MalformedError):
        decode_manifest(canonical.dumps(body))
    body["rollout_ppm"] = 5
    body["flists"][0]["mount"] = "relative"
    with pytest.raises(MalformedError) as info:
        decode_manifest(canonical.dumps(body))
    assert not isinstance(info.value, TrustUsageError)
    assert isinstance(info.value, TrustError)


def test_extension_fields_are_ignored_other_unknown_fields_refused() -> None:
    body = canonical.loads(encode_manifest(RepoSim().manifest()), max_size=1 << 20)
    body["x-note"] = "ignored"
    decode_manifest(canonical.dumps(body))
    body["critical"] = True
    with pytest.raises(MalformedError, match="unknown critical field 'critical'"):
        decode_manifest(canonical.dumps(body))


def test_root_and_anchor_parsers_refuse_every_truncation_and_trailing_data() -> None:
    from zosnode.trust.anchor import decode as decode_anchor

    sim = RepoSim()
    body = encode_root(sim.root)
    anchor = encode_anchor(sim.anchor())
    for data, parse in ((body, decode_root), (anchor, decode_anchor)):
        assert parse(data) is not None
        for cut in range(len(data)):
            with pytest.raises(MalformedError):
                parse(data[:cut])
        with pytest.raises(MalformedError, match="not canonical"):
            parse(data + b"\x00")
