"""A real Debian root filesystem for tests and benchmarks, built once and cached.

`debootstrap --variant=minbase bookworm` runs once per cache; the tree is kept
as a tarball under work/cache/ at the repository top (git-ignored) and
unpacked afresh for each test session. If the mirror cannot be reached the
fixture fails loudly: a skipped rootfs test would hide a broken build.

Use the `debian_rootfs` fixture (import it into a conftest), or call
`rootfs_tarball()` / `unpack_rootfs()` from a benchmark.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.lab.netns import require_root

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "work" / "cache"
MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
_TAR_FLAGS = ["--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls", "--selinux"]


def rootfs_tarball(include: Sequence[str] = ()) -> Path:
    """The cached tarball of a minbase rootfs (plus `include` packages), built if absent."""
    suffix = "" if not include else "+" + ",".join(sorted(include))
    tarball = CACHE / f"debian-{SUITE}-minbase{suffix}.tar"
    if tarball.is_file():
        return tarball
    CACHE.mkdir(parents=True, exist_ok=True)
    build = CACHE / f".build-{os.getpid()}{suffix}"
    subprocess.run(["rm", "-rf", "--one-file-system", str(build)], check=True)
    argv = ["debootstrap", "--variant=minbase", f"--cache-dir={CACHE / 'debs'}"]
    if include:
        argv.append("--include=" + ",".join(sorted(include)))
    (CACHE / "debs").mkdir(exist_ok=True)
    res = subprocess.run([*argv, SUITE, str(build), MIRROR], capture_output=True, text=True)
    try:
        if res.returncode != 0:
            raise RuntimeError(
                f"debootstrap failed ({res.returncode}); is {MIRROR} reachable?\n"
                + res.stdout[-2000:] + res.stderr[-2000:]
            )
        tmp = tarball.with_name(tarball.name + f".tmp{os.getpid()}")
        subprocess.run(
            ["tar", *_TAR_FLAGS, "--sort=name", "-C", str(build), "-cf", str(tmp), "."],
            check=True,
        )
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, tarball)
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", str(build)], check=False)
    return tarball


def unpack_rootfs(tarball: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", *_TAR_FLAGS, "-xpf", str(tarball), "-C", str(dest)], check=True)
    return dest


@pytest.fixture(scope="session")
def debian_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly unpacked Debian bookworm minbase tree (needs root; slow the first time)."""
    require_root("debootstrap and unpacking a root filesystem")
    tarball = rootfs_tarball()
    return unpack_rootfs(tarball, tmp_path_factory.mktemp("rootfs") / "root")
