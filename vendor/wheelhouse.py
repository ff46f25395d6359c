#!/usr/bin/env python3
"""Fill build/wheels with exactly the pinned third-party set.

Wheels listed in runtime.lock are downloaded with --require-hashes; pyfuse3
(source.lock) is downloaded as a hash-checked sdist and compiled against the
system libfuse3 in a private build environment made from build.lock. The
result, with the sha256 of what was vendored, is recorded in
build/wheels/vendored.json, which build_zipapp.py reads for the SBOM.

Usage: python3 vendor/wheelhouse.py [--wheelhouse DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

VENDOR = Path(__file__).resolve().parent
LOCK_LINE = re.compile(
    r"^(?P<name>[A-Za-z0-9_.-]+)==(?P<version>\S+)\s+--hash=sha256:(?P<sha>[0-9a-f]{64})$"
)


class LockError(Exception):
    pass


def read_lock(path: Path) -> list[tuple[str, str, str]]:
    pins = []
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = LOCK_LINE.match(line)
        if not m:
            raise LockError(f"{path.name}:{n}: not 'name==version --hash=sha256:HEX'")
        pins.append((m["name"], m["version"], m["sha"]))
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], check=True)


def _find(directory: Path, name: str, version: str, suffixes: tuple[str, ...]) -> Path | None:
    prefix = f"{_norm(name)}-{version}"
    for p in sorted(directory.iterdir()):
        if _norm(p.name).startswith(_norm(prefix)) and p.name.endswith(suffixes):
            return p
    return None


def ensure(wheelhouse: Path) -> dict[str, dict[str, str]]:
    """Make `wheelhouse` hold the pinned set; return the vendored record."""
    wheelhouse.mkdir(parents=True, exist_ok=True)
    record_path = wheelhouse / "vendored.json"
    runtime = read_lock(VENDOR / "runtime.lock")
    source = read_lock(VENDOR / "source.lock")
    wanted = {name: (version, sha) for name, version, sha in runtime + source}
    if record_path.exists():
        record = json.loads(record_path.read_text())
        if {k: (v["version"], v["sha256"]) for k, v in record.items()} == wanted and all(
            (wheelhouse / v["wheel"]).is_file() for v in record.values()
        ):
            return dict(record)

    record = {}
    missing = [p for p in runtime if _find(wheelhouse, p[0], p[1], (".whl",)) is None]
    if missing:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as req:
            req.write("".join(f"{n}=={v} --hash=sha256:{s}\n" for n, v, s in missing))
        try:
            _pip("download", "--no-deps", "--require-hashes", "--only-binary=:all:",
                 "-d", str(wheelhouse), "-r", req.name)
        finally:
            os.unlink(req.name)
    for name, version, sha in runtime:
        wheel = _find(wheelhouse, name, version, (".whl",))
        if wheel is None or _sha256(wheel) != sha:
            raise LockError(f"{name}=={version}: downloaded wheel does not match its pinned hash")
        record[name] = {"version": version, "sha256": sha, "wheel": wheel.name}

    for name, version, sha in source:
        record[name] = {"version": version, "sha256": sha,
                        "wheel": _build_from_source(wheelhouse, name, version, sha).name}
    tmp = record_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, record_path)
    return record


def _build_from_source(wheelhouse: Path, name: str, version: str, sha: str) -> Path:
    built = _find(wheelhouse, name, version, (".whl",))
    sdists = wheelhouse / "sdist"
    sdists.mkdir(exist_ok=True)
    sdist = _find(sdists, name, version, (".tar.gz",))
    if sdist is None:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as req:
            req.write(f"{name}=={version} --hash=sha256:{sha}\n")
        try:
            _pip("download", "--no-deps", "--require-hashes", "--no-binary=:all:",
                 "-d", str(sdists), "-r", req.name)
        finally:
            os.unlink(req.name)
        sdist = _find(sdists, name, version, (".tar.gz",))
    if sdist is None or _sha256(sdist) != sha:
        raise LockError(f"{name}=={version}: sdist does not match its pinned hash")
    if built is not None:
        return built
    env_dir = wheelhouse / "buildenv"
    if not (env_dir / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
        subprocess.run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", "--require-hashes", "--no-deps",
                        "-r", str(VENDOR / "build.lock")], check=True)
    env = dict(os.environ)
    # No debug info and no build paths in the object: the same source and
    # compiler give the same bytes.
    env["CFLAGS"] = "-g0 -O2 -ffile-prefix-map=/tmp=."
    env.setdefault("SOURCE_DATE_EPOCH", "315532800")
    subprocess.run([str(env_dir / "bin" / "python"), "-m", "pip", "wheel", "-q",
                    "--disable-pip-version-check", "--no-deps", "--no-build-isolation",
                    "-w", str(wheelhouse), str(sdist)], check=True, env=env)
    built = _find(wheelhouse, name, version, (".whl",))
    if built is None:
        raise LockError(f"{name}=={version}: building from source produced no wheel")
    return built


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheelhouse", type=Path, default=VENDOR.parent / "build" / "wheels")
    args = ap.parse_args()
    try:
        record = ensure(args.wheelhouse)
    except (LockError, subprocess.CalledProcessError) as exc:
        print(f"wheelhouse: error: {exc}", file=sys.stderr)
        return 2
    for name, info in sorted(record.items()):
        print(f"{name:<18} {info['version']:<12} {info['wheel']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
