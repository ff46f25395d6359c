"""`zosnode release`: build, sign and verify roots and release manifests.

The workflow, all offline except publishing:

    zosnode keys generate -o k1.key                       (on each signer's machine)
    zosnode release root --key ID1 --key ID2 --key ID3 --threshold 2 --version 1 -o 1.root
    zosnode release sign 1.root --key k1.key               (each signer, in turn)
    zosnode release anchor --root 1.root --floor 1 -o anchor.cbor   (for build_zipapp.py)
    zosnode release build release.toml --store DATA -o stable-7.manifest
    zosnode release sign stable-7.manifest --key k1.key
    zosnode release verify stable-7.manifest --anchor anchor.cbor --roots DATA/roots

Steering a published release, each a new signed manifest put to the hub
(the hub's Releases page shows these lines ready to paste):

    zosnode release rollout --hub URL --channel stable --fraction 0.25 --key k1.key \
        --publisher-key pub.key
    zosnode release pause  --hub URL --channel stable --key k1.key --publisher-key pub.key
    zosnode release resume --hub URL --channel stable --key k1.key --publisher-key pub.key
    zosnode release promote --hub URL --from testing --to stable --key k1.key \
        --publisher-key pub.key

Each fetches the channel's current manifest, verifies it as a node would
(`--anchor` or `--root`, else the anchor compiled into this copy; the hub's
roots followed), re-issues its contents as the next version
(`zosnode.agent.upgrade` explains the `zos.rollout` metadata nodes obey),
signs it with every `--key` and publishes it; with `-o FILE`
it writes the document instead, for more signers (`release sign`) and `hub
push --manifest`.

A refusal by `verify` is reported as one line naming the rule broken, exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from zosnode import canonical, layout
from zosnode.cli.group import add_command, add_group
from zosnode.errors import UserError
from zosnode.hub import paths
from zosnode.trust import anchor as anchor_mod
from zosnode.trust import envelope, keyfile, release_toml
from zosnode.trust.atomicfile import write_atomic
from zosnode.trust.download import verify_pinned
from zosnode.trust.errors import Refused
from zosnode.trust.manifest import MAX_MANIFEST_BYTES, PPM, Manifest
from zosnode.trust.manifest import decode_body as decode_manifest
from zosnode.trust.root import MAX_ROOT_BYTES, Root
from zosnode.trust.root import decode_body as decode_root
from zosnode.trust.signing import (
    encode_anchor,
    encode_envelope,
    encode_manifest,
    encode_root,
    key_id,
    make_anchor,
    make_root,
    with_signature,
)
from zosnode.trust.verifier import Verifier, effective_now

DAY = 86_400
CAPS = {"root": MAX_ROOT_BYTES, "manifest": MAX_MANIFEST_BYTES}


def register(sub: Any) -> None:
    _, commands = add_group(sub, "release", "build, sign and verify release manifests")

    p = add_command(commands, "build", "turn a release TOML into an unsigned manifest", run_build)
    p.add_argument("toml", type=Path, help="release description (TOML)")
    p.add_argument("--store", type=Path, required=True,
                   help="block store DATA dir whose tags/ name the flists")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--now", type=int, help="issued_at default (unix s; default: now)")

    p = add_command(commands, "root", "write an unsigned root (keys, threshold, expiry)", run_root)
    p.add_argument("--key", action="append", required=True, dest="keys",
                   help="a key id (64 hex) or a private key file; repeat for each key")
    p.add_argument("--threshold", type=int, required=True, help="signatures required (k of n)")
    p.add_argument("--version", type=int, required=True, help="root version (1, then +1)")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--expires-at", type=int, help="unix seconds")
    when.add_argument("--expires-in-days", type=int, default=365)
    p.add_argument("--manifest-floor", type=int, default=0,
                   help="lowest manifest version nodes accept under this root")
    p.add_argument("-o", "--output", type=Path, required=True)

    p = add_command(commands, "sign", "add one signature to a root or manifest", run_sign)
    p.add_argument("file", type=Path)
    p.add_argument("--key", type=Path, required=True, help="private key file")
    p.add_argument("-o", "--output", type=Path, help="write here instead of in place")

    p = add_command(commands, "verify", "verify a root or manifest and say why it fails",
                    run_verify)
    p.add_argument("file", type=Path)
    trust = p.add_mutually_exclusive_group()
    trust.add_argument("--anchor", type=Path, help="trust anchor (from release anchor)")
    trust.add_argument("--root", type=Path, help="a trusted signed root file")
    p.add_argument("--roots", type=Path, help="directory of N.root files to follow rotations")
    p.add_argument("--channel", help="channel the node follows (default: the manifest's)")
    p.add_argument("--store", type=Path, help="DATA dir: also check each pinned flist")
    p.add_argument("--agent-version", help="refuse if the manifest needs a newer agent")
    p.add_argument("--now", type=int, help="verify as of this unix time (default: now)")

    p = add_command(commands, "anchor", "write the trust anchor build_zipapp.py compiles in",
                    run_anchor)
    p.add_argument("--root", type=Path, required=True, help="the initial signed root")
    p.add_argument("--floor", type=int, default=0, help="lowest manifest version ever accepted")
    p.add_argument("--build-time", type=int,
                   help="unix s (default: SOURCE_DATE_EPOCH, else now); nodes never "
                   "trust a clock earlier than this")
    p.add_argument("-o", "--output", type=Path, required=True)

    p = add_command(commands, "show", "print a root or manifest as JSON (unverified)", run_show)
    p.add_argument("file", type=Path)

    p = add_command(commands, "rollout", "set the rollout fraction of a channel's release",
                    run_rollout)
    _steer_args(p)
    p.add_argument("--fraction", required=True,
                   help="share of nodes that take the release: 0..1 or a percentage (25%%)")
    p = add_command(commands, "pause", "pause a channel's rollout (nodes not on it stay)",
                    run_pause)
    _steer_args(p)
    p = add_command(commands, "resume", "resume a paused rollout", run_resume)
    _steer_args(p)
    p = add_command(commands, "promote", "publish a channel's release on another channel",
                    run_promote)
    _steer_args(p, channel=False)
    p.add_argument("--from", dest="source", required=True, help="channel to take it from")
    p.add_argument("--to", dest="target", required=True, help="channel to publish it on")
    p.add_argument("--release", type=int, help="the source channel's release (default: current)")
    p.add_argument("--fraction", help="rollout fraction on the target (default: the source's)")


def _steer_args(p: argparse.ArgumentParser, channel: bool = True) -> None:
    p.add_argument("--hub", required=True, metavar="URL", help="the hub to read and publish to")
    trust = p.add_mutually_exclusive_group()
    trust.add_argument("--anchor", type=Path,
                       help="trust anchor the hub's manifest must verify against "
                            "(default: the one compiled into this copy)")
    trust.add_argument("--root", type=Path, help="a trusted signed root file, instead")
    if channel:
        p.add_argument("--channel", required=True)
    p.add_argument("--key", action="append", default=[], type=Path, dest="keys",
                   help="release signer's private key file (repeat up to the threshold)")
    p.add_argument("--publisher-key", type=Path, help="publisher key file (to publish)")
    p.add_argument("-o", "--output", type=Path,
                   help="write the signed document here instead of publishing it")
    p.add_argument("--expires-in-days", type=int,
                   help="validity of the new manifest (default: as long as the current one)")
    p.add_argument("--now", type=int, help="issued_at (unix s; default: now)")


# -- shared plumbing -------------------------------------------------------


def _read(path: Path, cap: int, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(cap + 1)
    except FileNotFoundError:
        raise UserError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not a {what}") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > cap:
        raise UserError(f"{path}: larger than the {cap}-byte cap for a {what}")
    return data


def _write(path: Path, data: bytes) -> None:
    try:
        write_atomic(path, data)
    except OSError as exc:
        raise UserError(f"{path}: cannot write: {exc.strerror}") from None


def _refused(path: Path, exc: Refused) -> UserError:
    # A refusal is the bytes' fault; here they are a file the user named.
    return UserError(f"{path}: refused: {type(exc).__name__}: {exc}")


def _open_document(path: Path) -> tuple[envelope.Envelope, Root | Manifest]:
    """Read an envelope of either kind and parse its body (no signature checks)."""
    data = _read(path, max(CAPS.values()), "root or manifest")
    try:
        value = canonical.loads(data, max_size=len(data) or 1, max_depth=8)
        kind = value.get("kind") if isinstance(value, dict) else None
        if kind not in CAPS:
            raise UserError(f"{path}: not a signed root or manifest")
        env = envelope.decode(data, max_size=CAPS[kind], kind=kind)
        body: Root | Manifest = decode_root(env.body) if kind == "root" else decode_manifest(
            env.body
        )
    except canonical.CanonicalError as exc:
        raise UserError(f"{path}: not a signed root or manifest: {exc}") from None
    except Refused as exc:
        raise _refused(path, exc) from None
    return env, body


def _now(value: int | None) -> int:
    return int(time.time()) if value is None else value


# -- commands ---------------------------------------------------------------


def run_build(args: argparse.Namespace) -> int:
    from zosnode.flist.errors import FlistError
    from zosnode.flist.store import LocalStore

    raw = _read(args.toml, 1 << 20, "release TOML file")
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise UserError(f"{args.toml}: not UTF-8 text") from None
    if not (args.store / layout.FLISTS).is_dir():
        raise UserError(f"{args.store}: not a block store (no flists/ directory)")
    store = LocalStore(args.store)

    def resolve(name: str) -> tuple[str, int]:
        try:
            fid = store.get_tag(name)
            if fid is None:
                raise UserError(f"{args.toml}: unknown flist {name!r}: no tag {name!r} in "
                                f"{args.store}/tags")
            return fid, len(store.get_flist(fid))
        except FlistError as exc:
            raise UserError(f"{args.toml}: flist {name!r}: {exc}") from None

    manifest = release_toml.parse(text, resolve, _now(args.now), source=str(args.toml))
    _write(args.output, encode_envelope(envelope.Envelope("manifest", encode_manifest(manifest))))
    print(f"{args.output}: manifest {manifest.channel} v{manifest.version}, "
          f"{len(manifest.flists)} flist(s), {len(manifest.services)} service(s), unsigned")
    return 0


def run_root(args: argparse.Namespace) -> int:
    ids = []
    for k in args.keys:
        if layout.is_hex_id(k):
            ids.append(k)
        elif not os.path.lexists(k):
            raise UserError(f"--key {k}: not a key id, and no such key file")
        else:
            ids.append(keyfile.public_id(Path(k)))
    expires = (args.expires_at if args.expires_at is not None
               else _now(None) + args.expires_in_days * DAY)
    root = make_root(args.version, expires, args.threshold, ids, args.manifest_floor)
    _write(args.output, encode_envelope(envelope.Envelope("root", encode_root(root))))
    print(f"{args.output}: root v{root.version}, {root.threshold} of {len(root.keys)} keys, "
          "unsigned")
    return 0


def run_sign(args: argparse.Namespace) -> int:
    key = keyfile.load(args.key)
    env, _ = _open_document(args.file)
    signed = with_signature(env, key)
    out = args.output or args.file
    _write(out, encode_envelope(signed))
    replaced = key_id(key) in {s.keyid for s in env.signatures}
    again = " (replacing its earlier signature)" if replaced else ""
    print(f"{out}: {env.kind} signed by {key_id(key)}{again}; "
          f"{len(signed.signatures)} signature(s)")
    return 0


def _trust_from(args: argparse.Namespace) -> anchor_mod.Anchor:
    try:
        if args.anchor is not None:
            return anchor_mod.decode(_read(args.anchor, anchor_mod.MAX_ANCHOR_BYTES, "anchor"))
        if args.root is not None:
            return make_anchor(_read(args.root, MAX_ROOT_BYTES, "root"), 0, 0)
    except Refused as exc:
        raise _refused(args.anchor or args.root, exc) from None
    embedded = anchor_mod.load_embedded()
    if embedded is None:
        raise UserError("give --anchor or --root (no trust anchor is compiled into this copy)")
    return embedded


def _follow(v: Verifier, roots_dir: Path | None, until: int | None) -> None:
    if roots_dir is None:
        return
    if not roots_dir.is_dir():
        raise UserError(f"{roots_dir}: no such directory")
    refresh = v.refresh()
    while (wanted := refresh.wanted()) is not None and (until is None or wanted <= until):
        # A directory of roots named as a hub's roots/ folder names them.
        path = roots_dir / Path(layout.root_path(wanted)).name
        if not path.exists():
            break
        try:
            refresh.received(_read(path, MAX_ROOT_BYTES, "root"))
        except Refused as exc:
            raise _refused(path, exc) from None


def run_verify(args: argparse.Namespace) -> int:
    anchor = _trust_from(args)
    v = Verifier(anchor)
    now = effective_now(_now(args.now), anchor)
    env, body = _open_document(args.file)
    data = encode_envelope(env)
    try:
        if isinstance(body, Root):
            _follow(v, args.roots, body.version - 1)
            if not (body.version == v.root.version and data == v.root_bytes):
                v.accept_root(_read(args.file, MAX_ROOT_BYTES, "root"))
            v.check_root_fresh(now)
            print(f"OK: root v{body.version}, {body.threshold} of {len(body.keys)} keys, "
                  f"expires {body.expires_at}")
            return 0
        _follow(v, args.roots, None)
        raw = _read(args.file, MAX_MANIFEST_BYTES, "manifest")
        got = v.verify_manifest(raw, channel=args.channel or body.channel, now=now,
                                agent_version=args.agent_version)
        m = got.manifest
        if args.store is not None:
            for pin in m.flists:
                path = args.store / layout.flist_path(pin.id)
                verify_pinned(pin, _read(path, pin.size + 1, f"flist ({pin.name})")
                              if path.exists() else b"")
    except Refused as exc:
        raise _refused(args.file, exc) from None
    print(f"OK: manifest {m.channel} v{m.version}, signed by {len(got.signers)} of "
          f"{len(v.root.keys)} keys (threshold {v.root.threshold}, root v{v.root.version}), "
          f"expires {m.expires_at}" + (f", {len(m.flists)} flist(s) checked" if args.store
                                        else ""))
    return 0


def run_anchor(args: argparse.Namespace) -> int:
    build_time = args.build_time
    if build_time is None:
        env_time = os.environ.get("SOURCE_DATE_EPOCH")
        build_time = int(env_time) if env_time and env_time.isdigit() else _now(None)
    root_bytes = _read(args.root, MAX_ROOT_BYTES, "root")
    try:
        anchor = make_anchor(root_bytes, args.floor, build_time)
    except Refused as exc:
        raise _refused(args.root, exc) from None
    _write(args.output, encode_anchor(anchor))
    print(f"{args.output}: anchor with root v{anchor.root.version} "
          f"({anchor.root.threshold} of {len(anchor.root.keys)}), floor {anchor.floor}, "
          f"build time {anchor.build_time}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    env, body = _open_document(args.file)
    shown = canonical.loads(env.body, max_size=len(env.body))
    shown["kind"] = env.kind
    shown["signed_by"] = sorted(s.keyid for s in env.signatures)
    # Metadata may hold byte strings; JSON shows them as hex.
    print(json.dumps(_jsonable(shown), indent=2, sort_keys=True))
    return 0


def _jsonable(value: Any) -> Any:
    """CBOR to JSON: byte strings as hex, integer map keys as text."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value.hex() if isinstance(value, bytes) else value


# -- steering a published release -------------------------------------------------


def _fraction_ppm(text: str) -> int:
    raw = text.strip()
    try:
        share = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise UserError(f"--fraction {text!r}: give 0..1 or a percentage like 25%") from None
    if not 0.0 <= share <= 1.0:
        raise UserError(f"--fraction {text!r}: must be between 0 and 1 (0% and 100%)")
    return round(share * PPM)


def _hub_get(hub: str, path: str) -> bytes | None:
    from zosnode.http.client import HttpPeerError
    from zosnode.http.command import base_url, run_request

    url = base_url(hub) + path
    try:
        reply = run_request("GET", url, max_size=MAX_MANIFEST_BYTES)
    except HttpPeerError as exc:
        raise UserError(f"--hub {hub}: {exc}") from None
    if reply.status == 404:
        return None
    if reply.status != 200:
        raise UserError(f"--hub {hub}: HTTP {reply.status} for {path}")
    return reply.body


def _current(args: argparse.Namespace, channel: str) -> Manifest | None:
    layout.check_channel(channel)
    data = _hub_get(args.hub, "/" + layout.manifest_path(channel))
    if data is None:
        return None
    return _trusted(args, data, channel, f"the {channel} manifest")


def _trusted(args: argparse.Namespace, data: bytes, channel: str, what: str, *,
             as_issued: bool = False) -> Manifest:
    """The hub's copy of a manifest, checked as a node checks it (the trust anchor,
    the hub's roots followed, the signature threshold). Steering re-signs its
    contents, so contents a hub or mirror forged must never reach a signer.
    `as_issued` checks an old release as of its own issue time (it may have
    expired since; its signatures have not)."""
    from zosnode.hub.publish import stored_manifest

    try:
        claimed = stored_manifest(data)
    except Refused as exc:
        raise UserError(f"{args.hub}: {what} does not decode: {exc}") from None
    anchor = _trust_from(args)
    v = Verifier(anchor)
    refresh = v.refresh()
    while (wanted := refresh.wanted()) is not None:
        raw = _hub_get(args.hub, "/" + layout.root_path(wanted))
        if raw is None:
            break
        try:
            refresh.received(raw)
        except Refused as exc:
            raise UserError(f"{args.hub}: root v{wanted}: {exc}") from None
    now = claimed.issued_at if as_issued else effective_now(_now(args.now), anchor)
    try:
        return v.verify_manifest(data, channel=channel, now=now).manifest
    except Refused as exc:
        raise UserError(f"{args.hub}: {what} does not verify against the trust you gave "
                        f"(--anchor/--root): {exc}") from None


def _reissue(args: argparse.Namespace, m: Manifest, **changes: Any) -> int:
    """Sign `m` with `changes` as the next version; publish it or write it."""
    import dataclasses

    now = _now(args.now)
    days = args.expires_in_days
    life = days * DAY if days is not None else max(DAY, m.expires_at - m.issued_at)
    if life <= 0:
        raise UserError("--expires-in-days must be at least 1")
    changes.setdefault("version", m.version + 1)
    new = dataclasses.replace(m, issued_at=now, expires_at=now + life, **changes)
    if not args.keys and args.output is None:
        raise UserError("give --key SIGNER.key (a release signer), or -o FILE to sign later")
    env = envelope.Envelope("manifest", encode_manifest(new))
    for path in args.keys:
        env = with_signature(env, keyfile.load(path))
    data = encode_envelope(env)
    what = (f"manifest {new.channel} v{new.version} ({_describe(new)}), "
            f"{len(env.signatures)} signature(s)")
    if args.output is not None:
        _write(args.output, data)
        print(f"{args.output}: {what}; add signatures with `zosnode release sign`, then "
              "`zosnode hub push --manifest`")
        return 0
    if args.publisher_key is None:
        raise UserError("give --publisher-key KEYFILE to publish (or -o FILE)")
    _publish(args.hub, keyfile.load(args.publisher_key), new.channel, data)
    print(f"published {what} to {args.hub}")
    return 0


def _describe(m: Manifest) -> str:
    from zosnode.agent.upgrade import rollout_paused, rollout_release

    of = rollout_release(m)
    text = f"rollout {m.rollout_ppm / PPM:.2%}" + (", paused" if rollout_paused(m) else "")
    return text + (f", release {of} re-issued" if of != m.version else "")


def _publish(hub: str, key: Any, channel: str, data: bytes) -> None:
    from zosnode.http.client import HttpPeerError
    from zosnode.http.command import base_url, run_request
    from zosnode.wire.publish_auth import sign_request

    target = "/" + layout.manifest_path(channel)
    headers = dict(sign_request(key, "PUT", target, data, now=int(time.time())))
    try:
        reply = run_request("PUT", base_url(hub) + target, body=data, headers=headers,
                            max_size=64 * 1024)
    except HttpPeerError as exc:
        raise UserError(f"--hub {hub}: {exc}") from None
    if reply.status != 201:
        text = reply.body.decode("utf-8", "replace").strip().splitlines()
        raise UserError(f"{hub} refused the manifest: HTTP {reply.status}: "
                        f"{(text or [''])[0][:200]}")


def _steered(args: argparse.Namespace) -> Manifest:
    m = _current(args, args.channel)
    if m is None:
        raise UserError(f"{args.hub}: channel {args.channel!r} has no published release")
    return m


def _rollout_meta(m: Manifest, paused: bool) -> dict[str, Any]:
    from zosnode.agent.upgrade import ROLLOUT_KEY, rollout_release

    return {**m.metadata, ROLLOUT_KEY: {"of": rollout_release(m), "paused": paused}}


def run_rollout(args: argparse.Namespace) -> int:
    from zosnode.agent.upgrade import rollout_paused

    ppm = _fraction_ppm(args.fraction)
    m = _steered(args)
    if ppm < m.rollout_ppm:
        print(f"note: lowering the fraction from {m.rollout_ppm / PPM:.2%} does not move "
              "nodes that already took the release back", file=sys.stderr)
    return _reissue(args, m, rollout_ppm=ppm, metadata=_rollout_meta(m, rollout_paused(m)))


def run_pause(args: argparse.Namespace) -> int:
    from zosnode.agent.upgrade import rollout_paused

    m = _steered(args)
    if rollout_paused(m):
        raise UserError(f"channel {args.channel!r}: the rollout of v{m.version} is already "
                        "paused")
    return _reissue(args, m, metadata=_rollout_meta(m, True))


def run_resume(args: argparse.Namespace) -> int:
    from zosnode.agent.upgrade import rollout_paused

    m = _steered(args)
    if not rollout_paused(m):
        raise UserError(f"channel {args.channel!r}: the rollout of v{m.version} is not paused")
    return _reissue(args, m, metadata=_rollout_meta(m, False))


def run_promote(args: argparse.Namespace) -> int:
    from zosnode.agent.upgrade import ROLLOUT_KEY

    if args.source == args.target:
        raise UserError("--from and --to name the same channel")
    if args.release is None:
        src = _current(args, args.source)
    else:
        path = "/" + paths.release_path(args.source, args.release)
        data = _hub_get(args.hub, path)
        src = _trusted(args, data, args.source, path, as_issued=True) if data else None
    if src is None:
        raise UserError(f"{args.hub}: channel {args.source!r} has no such release")
    dest = _current(args, args.target)
    metadata = {k: v for k, v in src.metadata.items() if k != ROLLOUT_KEY}
    metadata["zos.promoted"] = {"channel": src.channel, "version": src.version}
    ppm = _fraction_ppm(args.fraction) if args.fraction else src.rollout_ppm
    return _reissue(args, src, channel=args.target, metadata=metadata, rollout_ppm=ppm,
                    version=dest.version + 1 if dest is not None else 1)
