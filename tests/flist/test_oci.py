"""OCI image-layout directories and `docker save` tarballs: layers, whiteouts, config."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from zosnode.flist.browse import lookup, read_range, walk
from zosnode.flist.builder import build_from, detect
from zosnode.flist.errors import FlistDataError
from zosnode.flist.extract import BlockReader
from zosnode.flist.format import Kind
from zosnode.flist.store import LocalStore
from zosnode.flist.view import FlistView

CONFIG = {
    "architecture": "amd64",
    "os": "linux",
    "config": {
        "Entrypoint": ["/bin/app"],
        "Cmd": ["--serve", "x y"],
        "Env": ["PATH=/usr/bin:/bin", "MODE=prod"],
        "WorkingDir": "/srv",
        "User": "1000:1000",
    },
    "rootfs": {"type": "layers", "diff_ids": []},
}


def _layer(members: list[tuple[str, bytes | None]]) -> bytes:
    """A tar layer; None content means a directory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


LAYERS = [
    _layer([
        ("bin", None), ("bin/app", b"app v1"), ("etc", None), ("etc/keep", b"keep"),
        ("etc/gone", b"will be whited out"), ("var", None), ("var/cache", None),
        ("var/cache/old1", b"old"), ("var/cache/old2", b"old"),
    ]),
    _layer([
        ("bin/app", b"app v2"), ("etc/.wh.gone", b""), ("var/cache", None),
        ("var/cache/.wh..wh..opq", b""), ("var/cache/new", b"new"), ("srv", None),
    ]),
]


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_oci_layout(root: Path, tamper: bool = False) -> Path:
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        d = _digest(data)
        (blobs / d.split(":")[1]).write_bytes(data)
        return d

    layer_descs = []
    for layer in LAYERS:
        gz = gzip.compress(layer, mtime=0)
        layer_descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": put(gz), "size": len(gz)})
    config = json.dumps(CONFIG).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": put(config), "size": len(config)},
        "layers": layer_descs,
    }).encode()
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": put(manifest), "size": len(manifest),
        "platform": {"os": "linux", "architecture": "amd64"}}]}
    (root / "index.json").write_text(json.dumps(index))
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    if tamper:
        first = blobs / layer_descs[0]["digest"].split(":")[1]
        first.write_bytes(gzip.compress(LAYERS[1], mtime=0))
    return root


def make_docker_save(path: Path, tamper: bool = False) -> Path:
    config = dict(CONFIG, rootfs={"type": "layers",
                                  "diff_ids": [_digest(layer) for layer in LAYERS]})
    config_bytes = json.dumps(config).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    with tarfile.open(path, "w") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        names = []
        for i, layer in enumerate(LAYERS):
            add(f"layer{i}/layer.tar", LAYERS[0] if tamper and i == 1 else layer)
            names.append(f"layer{i}/layer.tar")
        add(config_name, config_bytes)
        add("manifest.json", json.dumps(
            [{"Config": config_name, "RepoTags": ["app:1"], "Layers": names}]).encode())
    return path


def _check_image(view: FlistView, store: LocalStore) -> None:
    reader = BlockReader(store)

    def cat(p: str) -> bytes:
        e = view.resolve(lookup(view, p))
        return read_range(reader, view, e, 0, e.size)

    assert cat("/bin/app") == b"app v2"
    assert cat("/etc/keep") == b"keep"
    assert view.child(lookup(view, "/etc"), b"gone") is None
    assert [c.name for c in view.children(lookup(view, "/var/cache"))] == [b"new"]
    assert lookup(view, "/srv").kind is Kind.DIR
    oci = view.flist.metadata["oci"]
    assert oci["entrypoint"] == ["/bin/app"]
    assert oci["cmd"] == ["--serve", "x y"]
    assert oci["env"] == ["PATH=/usr/bin:/bin", "MODE=prod"]
    assert oci["workdir"] == "/srv"
    assert oci["user"] == "1000:1000"
    # No whiteout markers survive into the image.
    assert not any(b".wh." in p for p, _ in walk(view))


def test_oci_layout_directory(tmp_path: Path, store: LocalStore) -> None:
    layout = make_oci_layout(tmp_path / "img")
    assert detect(str(layout)) == "oci"
    flist, _ = build_from(str(layout), store)
    _check_image(FlistView(flist), store)


def test_oci_layout_in_a_tarball(tmp_path: Path, store: LocalStore) -> None:
    layout = make_oci_layout(tmp_path / "img")
    tarball = tmp_path / "img.tar"
    with tarfile.open(tarball, "w") as tar:
        for p in sorted(layout.rglob("*")):
            tar.add(p, arcname=str(p.relative_to(layout)), recursive=False)
    assert detect(str(tarball)) == "oci"
    flist, _ = build_from(str(tarball), store)
    _check_image(FlistView(flist), store)


def test_docker_save_tarball(tmp_path: Path, store: LocalStore) -> None:
    tarball = make_docker_save(tmp_path / "saved.tar")
    assert detect(str(tarball)) == "oci"
    flist, _ = build_from(str(tarball), store)
    _check_image(FlistView(flist), store)


def test_same_image_same_id_from_both_forms(tmp_path: Path, store: LocalStore) -> None:
    from zosnode.flist.format import flist_id
    from zosnode.flist.writer import encode

    a, _ = build_from(str(make_oci_layout(tmp_path / "img")), store)
    b, _ = build_from(str(make_docker_save(tmp_path / "saved.tar")), store)
    assert flist_id(encode(a)) == flist_id(encode(b))


def test_layer_not_matching_its_digest_refused(tmp_path: Path, store: LocalStore) -> None:
    layout = make_oci_layout(tmp_path / "img", tamper=True)
    with pytest.raises(FlistDataError, match="digest"):
        build_from(str(layout), store)


def test_docker_layer_not_matching_diff_id_refused(tmp_path: Path, store: LocalStore) -> None:
    tarball = make_docker_save(tmp_path / "saved.tar", tamper=True)
    with pytest.raises(FlistDataError, match="digest"):
        build_from(str(tarball), store)


def test_blob_path_outside_image_refused(tmp_path: Path, store: LocalStore) -> None:
    tarball = tmp_path / "saved.tar"
    with tarfile.open(tarball, "w") as tar:
        data = json.dumps([{"Config": "../../etc/passwd", "Layers": []}]).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(FlistDataError, match="outside"):
        build_from(str(tarball), store)
