"""Build the demo OS: keys, a root, a trust anchor, two flists and three releases.

    python3 examples/demo_os.py WORKDIR

Everything goes through the `zosnode` command line, as a release engineer
would run it: `keys generate`, `flist create`, `release root/sign/anchor/build`.
Release 1 and 2 differ in one file (the greeter's message); release 3 keeps
release 2's flist but gives the greeter a readiness probe that always fails.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCES = Path(__file__).resolve().parent / "demo-os"
CHANNEL = "demo"


def zosnode(*args: str | os.PathLike[str]) -> str:
    """Run the CLI; its stdout, or an exception carrying its one-line error."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "zosnode", *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"zosnode {' '.join(map(str, args))}: {proc.stderr.strip()}")
    return proc.stdout


DATA_BYTES = 4 * 1024 * 1024


def reference_data(size: int) -> bytes:
    """Deterministic, incompressible bytes (the same on every machine)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.blake2b(counter.to_bytes(8, "big"), digest_size=64).digest()
        counter += 1
    return bytes(out[:size])


@dataclass(frozen=True)
class Kit:
    work: Path
    store: Path  # the local flist store (DATA layout)
    release_key: Path
    publisher_key: Path
    publisher_id: str
    root: Path  # signed root v1
    anchor: Path

    def manifest(self, version: int) -> Path:
        return self.work / f"release-{version}.manifest"


def build(work: Path) -> Kit:
    work.mkdir(parents=True, exist_ok=True)
    store = work / "store"
    release_key, publisher_key = work / "release.key", work / "publisher.key"
    zosnode("keys", "generate", "-o", release_key)
    publisher_id = zosnode("keys", "generate", "-o", publisher_key).strip()
    root = work / "1.root"
    zosnode("release", "root", "--key", release_key, "--threshold", "1", "--version", "1",
            "-o", root)
    zosnode("release", "sign", root, "--key", release_key)
    anchor = work / "anchor.cbor"
    zosnode("release", "anchor", "--root", root, "-o", anchor, "--build-time", "0")
    # Two images: the base tree (plus a generated data set, so that the image
    # spans several blocks), and the same with release 2's greeter.
    tree1 = work / "tree-1"
    shutil.copytree(SOURCES / "base", tree1)
    (tree1 / "share").mkdir()
    (tree1 / "share" / "reference.dat").write_bytes(reference_data(DATA_BYTES))
    zosnode("flist", "create", tree1, "--store", store, "--tag", "demo-1")
    tree2 = work / "tree-2"
    shutil.copytree(tree1, tree2)
    shutil.copy(SOURCES / "v2" / "greeter.py", tree2 / "bin" / "greeter.py")
    zosnode("flist", "create", tree2, "--store", store, "--tag", "demo-2")
    kit = Kit(work, store, release_key, publisher_key, publisher_id, root, anchor)
    for version in (1, 2, 3):
        sign_release(kit, (SOURCES / f"release-{version}.toml").read_text(), version)
    return kit


def sign_release(kit: Kit, toml: str, version: int, key: Path | None = None) -> Path:
    """Build and sign a release from TOML text (tests use it for hostile variants)."""
    src = kit.work / f"release-{version}.toml"
    src.write_text(toml)
    out = kit.manifest(version)
    zosnode("release", "build", src, "--store", kit.store, "-o", out)
    zosnode("release", "sign", out, "--key", key or kit.release_key)
    return out


def stranger_release(kit: Kit, key: Path, version: int) -> bytes:
    """Release 1's contents as `version`, signed by a new key at `key` that no node
    trusts (what a hostile hub serves in the boot tests)."""
    zosnode("keys", "generate", "-o", key)
    toml = (kit.work / "release-1.toml").read_text().replace("version = 1",
                                                             f"version = {version}")
    return sign_release(kit, toml, version, key=key).read_bytes()


def publish(kit: Kit, hub: str, version: int, *, first: bool = False) -> None:
    """Push the release's flist blocks (only what the hub lacks) and its manifest."""
    roots = ["--root", str(kit.root)] if first else []
    zosnode("hub", "push", "--hub", hub, "--key", kit.publisher_key, "--store", kit.store,
            *roots, "--manifest", kit.manifest(version))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: demo_os.py WORKDIR", file=sys.stderr)
        sys.exit(2)
    k = build(Path(sys.argv[1]))
    print(f"built the demo OS in {k.work}: anchor {k.anchor}, manifests 1-3")
