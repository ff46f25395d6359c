"""The locks parse, and the artifact's SBOM is exactly what they pin."""

from __future__ import annotations

import sys
from pathlib import Path

from zosnode.cli.audit_cmd import read_record

TOP = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "vendor"))
import wheelhouse  # noqa: E402


def test_locks_parse_with_hashes() -> None:
    for name in ("runtime.lock", "source.lock", "build.lock"):
        pins = wheelhouse.read_lock(TOP / "vendor" / name)
        assert pins, name
        for _, version, sha in pins:
            assert version and len(sha) == 64


def test_sbom_matches_the_locks(artifact: Path) -> None:
    pinned = {
        name: (version, sha)
        for lock in ("runtime.lock", "source.lock")
        for name, version, sha in wheelhouse.read_lock(TOP / "vendor" / lock)
    }
    sbom = {p.name: (p.version, p.sha256) for p in read_record(artifact).packages}
    assert sbom == pinned
    for p in read_record(artifact).packages:
        assert p.license and p.license != "UNKNOWN", p


def test_bad_lock_line_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "x.lock"
    bad.write_text("trio>=0.1\n")
    try:
        wheelhouse.read_lock(bad)
    except wheelhouse.LockError as exc:
        assert "x.lock:1" in str(exc)
    else:
        raise AssertionError("an unpinned line was accepted")
