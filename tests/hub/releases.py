"""Test-side builders: a local flist store, signing keys, roots and manifests."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import nacl.signing

from zosnode.flist.pack import build
from zosnode.flist.source_dir import tree_from_dir
from zosnode.flist.store import LocalStore
from zosnode.flist.writer import EncodedBlock, encode
from zosnode.trust.envelope import Envelope
from zosnode.trust.manifest import FlistPin, Manifest
from zosnode.trust.signing import (
    encode_envelope,
    encode_manifest,
    encode_root,
    key_id,
    make_root,
    with_signature,
)


def key(name: str) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(hashlib.sha256(name.encode()).digest())


@dataclass
class Image:
    store: LocalStore
    flist_id: str
    flist_bytes: bytes
    block_ids: list[str]


def make_image(root: Path, seed: int = 0, files: int = 12) -> Image:
    """An flist of random files in a LocalStore at `root / "store"`."""
    src = root / f"src{seed}"
    src.mkdir(parents=True)
    rnd = hashlib.sha256(str(seed).encode()).digest()
    for i in range(files):
        size = [700, 9000, 200_000, 1_500_000][i % 4]
        (src / f"f{i}").write_bytes((rnd + os.urandom(32)) * (size // 64))
    store = LocalStore(root / "store")
    store.init()
    ids: list[str] = []

    def sink(block: EncodedBlock) -> bool:
        ids.append(block.id)
        return store.put_block(block.stored)[1]

    flist, _ = build(tree_from_dir(src), sink)
    data = encode(flist)
    fid = store.put_flist(data)
    return Image(store, fid, data, list(flist.blocks()))


def signed_root(version: int, signers: list[nacl.signing.SigningKey],
                keys: list[nacl.signing.SigningKey], threshold: int,
                expires_at: int | None = None) -> bytes:
    root = make_root(version, expires_at or int(time.time()) + 86400 * 365, threshold,
                     [key_id(k) for k in keys])
    env = Envelope("root", encode_root(root))
    for k in signers:
        env = with_signature(env, k)
    return encode_envelope(env)


def signed_manifest(channel: str, version: int, signers: list[nacl.signing.SigningKey],
                    flists: tuple[tuple[str, int], ...] = ()) -> bytes:
    now = int(time.time())
    m = Manifest(channel=channel, version=version, issued_at=now - 10,
                 expires_at=now + 86400,
                 flists=tuple(FlistPin(f"img{i}", fid, size, f"/mnt/img{i}")
                              for i, (fid, size) in enumerate(flists)))
    env = Envelope("manifest", encode_manifest(m))
    for k in signers:
        env = with_signature(env, k)
    return encode_envelope(env)
