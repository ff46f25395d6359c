"""Build a tree from an OCI image: an image-layout directory or a `docker save` tarball.

Layers are applied in order with whiteouts and opaque directories; every
manifest, config and layer is checked against its sha256 digest before use.
The image's entrypoint, cmd, env, working directory and user go into the
flist's metadata under "oci".
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from zosnode.flist.errors import FlistDataError, FlistInputError
from zosnode.flist.source_tar import Spool, apply_tar, open_tar
from zosnode.flist.tree import Tree
from zosnode.layout import is_hex_id

_MAX_JSON = 4 * 1024 * 1024
_INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


class _Blobs:
    """Files of an image, from a directory or from inside a tarball."""

    def __init__(self, source: str) -> None:
        self.dir = source if os.path.isdir(source) else None
        self.tar = None if self.dir else open_tar(source)
        self.names = set(self.tar.getnames()) if self.tar else set()

    def exists(self, name: str) -> bool:
        if self.dir is not None:
            return os.path.isfile(os.path.join(self.dir, name))
        return name in self.names or "./" + name in self.names

    @contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        parts = name.split("/")
        if name.startswith("/") or ".." in parts:
            raise FlistDataError(f"image refers to {name!r} outside itself")
        if self.dir is not None:
            try:
                f: IO[bytes] = open(os.path.join(self.dir, name), "rb")
            except FileNotFoundError:
                raise FlistDataError(f"image has no {name}") from None
            with f:
                yield f
            return
        assert self.tar is not None
        for candidate in (name, "./" + name):
            if candidate in self.names:
                member = self.tar.extractfile(candidate)
                if member is None:
                    break
                yield member
                return
        raise FlistDataError(f"image has no {name}")

    def read_json(self, name: str, digest: str | None = None) -> Any:
        with self.open(name) as f:
            data = f.read(_MAX_JSON + 1)
        if len(data) > _MAX_JSON:
            raise FlistDataError(f"{name} is over {_MAX_JSON} bytes")
        if digest is not None:
            _check_digest(name, hashlib.sha256(data).hexdigest(), digest)
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise FlistDataError(f"{name} is not JSON: {exc}") from None

    def check_blob(self, name: str, digest: str, uncompressed: bool = False) -> None:
        """Check a blob's sha256; with `uncompressed`, of its gunzipped bytes
        (docker's diff_ids name the uncompressed layer tar)."""
        h = hashlib.sha256()
        with self.open(name) as f:
            stream: IO[bytes] | gzip.GzipFile = f
            if uncompressed and f.read(2) == b"\x1f\x8b":
                f.seek(0)
                stream = gzip.GzipFile(fileobj=f)
            else:
                f.seek(0)
            try:
                while buf := stream.read(1 << 20):
                    h.update(buf)
            except (OSError, EOFError) as exc:
                raise FlistDataError(f"{name} does not decompress: {exc}") from None
        _check_digest(name, h.hexdigest(), digest)

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()


def _sha256_hex(digest: object) -> str | None:
    """The hex of a `sha256:<64 hex>` digest, or None."""
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        return None
    hexa = digest.removeprefix("sha256:")
    return hexa if is_hex_id(hexa) else None


def _check_digest(name: str, actual: str, digest: str) -> None:
    want = _sha256_hex(digest)
    if want is None:
        raise FlistDataError(f"unsupported digest {digest!r} (only sha256)")
    if want != actual:
        raise FlistDataError(f"{name} does not match its digest {digest}")


def _blob_path(digest: object) -> str:
    hexa = _sha256_hex(digest)
    if hexa is None:
        raise FlistDataError(f"bad digest {digest!r}")
    return "blobs/sha256/" + hexa


def is_oci_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "oci-layout")) and os.path.isfile(
        os.path.join(path, "index.json")
    )


def is_oci_tar(path: str, look: int = 64) -> bool:
    """Whether a tarball looks like an image rather than a root filesystem.

    Only the first members are read, so telling a large rootfs tarball apart
    does not decompress all of it.
    """
    markers = {"manifest.json", "index.json", "oci-layout", "repositories"}
    try:
        with tarfile.open(path, "r:*") as tar:
            for i, info in enumerate(tar):
                name = info.name.removeprefix("./")
                if name in markers or name.startswith("blobs/sha256/") or name.endswith(
                    "/layer.tar"
                ):
                    return True
                if i >= look:
                    break
    except (tarfile.TarError, OSError, EOFError):
        return False
    return False


def _pick_manifest(blobs: _Blobs, index: Any, depth: int = 0) -> dict[str, Any]:
    if depth > 4:
        raise FlistDataError("image indexes nest too deeply")
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list) or not manifests:
        raise FlistDataError("image index lists no manifests")
    chosen = manifests[0]
    if len(manifests) > 1:
        for m in manifests:
            plat = m.get("platform", {}) if isinstance(m, dict) else {}
            if plat.get("os") == "linux" and plat.get("architecture") == "amd64":
                chosen = m
                break
    if not isinstance(chosen, dict):
        raise FlistDataError("bad manifest descriptor")
    digest = chosen.get("digest")
    doc = blobs.read_json(_blob_path(digest), digest)
    if chosen.get("mediaType") in _INDEX_TYPES or "manifests" in doc:
        return _pick_manifest(blobs, doc, depth + 1)
    if not isinstance(doc, dict):
        raise FlistDataError("image manifest is not an object")
    return doc


def _strs(value: object, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FlistDataError(f"image config {what} is not a list of strings")
    return list(value)


def oci_metadata(config: Any) -> dict[str, Any]:
    cfg = config.get("config") if isinstance(config, dict) else None
    if not isinstance(cfg, dict):
        return {}
    meta: dict[str, Any] = {}
    for key, name in (("Entrypoint", "entrypoint"), ("Cmd", "cmd"), ("Env", "env")):
        if cfg.get(key) is not None:
            meta[name] = _strs(cfg.get(key), key)
    for key, name in (("WorkingDir", "workdir"), ("User", "user")):
        value = cfg.get(key)
        if isinstance(value, str) and value:
            meta[name] = value
    return {"oci": meta}


def tree_from_oci(source: str, spool: Spool) -> tuple[Tree, dict[str, Any]]:
    if not os.path.exists(source):
        raise FlistInputError(f"no such file or directory: {source}")
    blobs = _Blobs(source)
    try:
        layers: list[tuple[str, str | None]] = []
        if blobs.exists("index.json") and blobs.exists("oci-layout"):
            manifest = _pick_manifest(blobs, blobs.read_json("index.json"))
            cdesc = manifest.get("config")
            if not isinstance(cdesc, dict):
                raise FlistDataError("image manifest has no config")
            config = blobs.read_json(_blob_path(cdesc.get("digest")), cdesc.get("digest"))
            ldescs = manifest.get("layers")
            if not isinstance(ldescs, list):
                raise FlistDataError("image manifest has no layer list")
            for d in ldescs:
                if not isinstance(d, dict):
                    raise FlistDataError("bad layer descriptor")
                if "zstd" in str(d.get("mediaType", "")):
                    raise FlistInputError("zstd-compressed layers are not supported")
                layers.append((_blob_path(d.get("digest")), d.get("digest")))
        elif blobs.exists("manifest.json"):
            docker = blobs.read_json("manifest.json")
            if not isinstance(docker, list) or len(docker) != 1 or not isinstance(docker[0], dict):
                raise FlistInputError("docker save archive must hold exactly one image")
            entry = docker[0]
            cname = entry.get("Config")
            if not isinstance(cname, str):
                raise FlistDataError("docker manifest has no Config")
            # `<64 hex>.json` (or a path ending so) names the config by its digest.
            tail = cname.removesuffix(".json")[-64:]
            config = blobs.read_json(cname, f"sha256:{tail}" if is_hex_id(tail) else None)
            rootfs = config.get("rootfs") if isinstance(config, dict) else None
            diff_ids = _strs(rootfs.get("diff_ids") if isinstance(rootfs, dict) else None,
                             "rootfs.diff_ids")
            names = _strs(entry.get("Layers"), "Layers")
            if len(diff_ids) != len(names):
                raise FlistDataError("docker image config does not list one diff_id per layer")
            for name, diff_id in zip(names, diff_ids, strict=True):
                blobs.check_blob(name, diff_id, uncompressed=True)
                layers.append((name, None))
        else:
            raise FlistInputError(f"{source} is not an OCI layout or a docker save archive")
        tree = Tree()
        for name, digest in layers:
            if digest is not None:
                blobs.check_blob(name, digest)
            with blobs.open(name) as f, open_tar(fileobj=f) as tar:  # type: ignore[arg-type]
                apply_tar(tree, tar, spool, layer=True)
        return tree, oci_metadata(config)
    finally:
        blobs.close()
