"""Pinned Debian packages: the lock file, and fetching and unpacking the .debs.

`packages.lock` names every package the initramfs is built from with its
exact version and the sha256 of its .deb. A .deb whose hash differs is
refused, wherever it came from.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from zosnode.bootmedia.errors import BuildInputError
from zosnode.layout import is_hex_id

_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_VERSION = re.compile(r"[0-9A-Za-z.+~:-]+")
APT_TIMEOUT_S = 300


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    sha256: str
    role: str  # "runtime" (the CPython runtime) or "kernel"

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise BuildInputError(f"package name {self.name!r} is not a Debian package name")
        if not _VERSION.fullmatch(self.version):
            raise BuildInputError(f"package {self.name}: bad version {self.version!r}")
        if not is_hex_id(self.sha256):
            raise BuildInputError(f"package {self.name}: sha256 must be 64 lowercase hex digits")
        if self.role not in ("runtime", "kernel"):
            raise BuildInputError(f"package {self.name}: role must be runtime or kernel")

    @property
    def deb_name(self) -> str:
        # apt-get download's file name: the epoch colon is URL-encoded.
        return f"{self.name}_{self.version.replace(':', '%3a')}_amd64.deb"


def parse_lock(text: str, source: str = "packages.lock") -> tuple[Pin, ...]:
    """Lines of `role name version sha256`; `#` starts a comment."""
    pins: list[Pin] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 4:
            raise BuildInputError(f"{source}:{lineno}: expected `role name version sha256`")
        pins.append(Pin(name=parts[1], version=parts[2], sha256=parts[3], role=parts[0]))
    if len({p.name for p in pins}) != len(pins):
        raise BuildInputError(f"{source}: a package is pinned twice")
    if sum(p.role == "kernel" for p in pins) != 1:
        raise BuildInputError(f"{source}: exactly one package must have the role kernel")
    return tuple(pins)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(pin: Pin, cache: Path) -> Path:
    """The pinned .deb in `cache`, downloaded by apt-get if absent, hash-checked."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / pin.deb_name
    if not path.exists():
        try:
            proc = subprocess.run(
                ["apt-get", "download", f"{pin.name}={pin.version}"],
                cwd=cache, capture_output=True, text=True, timeout=APT_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BuildInputError(f"apt-get download {pin.name}={pin.version}: {exc}") from exc
        if proc.returncode != 0 or not path.exists():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise BuildInputError(f"apt-get download {pin.name}={pin.version} failed: {last}")
    actual = _sha256(path)
    if actual != pin.sha256:
        raise BuildInputError(
            f"{path}: sha256 {actual} differs from the pinned {pin.sha256}; refusing it")
    return path


def extract(deb: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)],
                          capture_output=True, text=True, timeout=APT_TIMEOUT_S)
    if proc.returncode != 0:
        raise BuildInputError(f"dpkg-deb -x {deb}: {proc.stderr.strip()}")
