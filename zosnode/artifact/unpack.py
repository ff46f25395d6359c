"""The artifact's native extensions (a zip cannot hold them) on disk, on sys.path only if the
tree is exactly the record's; else rebuilt and renamed in (a racing loser verifies the winner's)."""

import hashlib
import os
import sys
import zipfile
from pathlib import Path

from zosnode.artifact.record import NATIVE_PREFIX, RECORD_NAME, ArtifactError, Record, file_sha256
from zosnode.atomicfile import new_tree, remove_tree

RUNTIME_ENV = "ZOSNODE_RUNTIME_DIR"
_ATTEMPTS = 5


def runtime_base() -> Path:
    if explicit := os.environ.get(RUNTIME_ENV):
        return Path(explicit)
    system = Path("/run/zosnode")
    if os.access(system if system.exists() else system.parent, os.W_OK | os.X_OK):
        return system
    if (xdg := os.environ.get("XDG_RUNTIME_DIR")) and os.access(xdg, os.W_OK):
        return Path(xdg) / "zosnode"
    return Path(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")) / "zosnode"


def verify_tree(root: Path, expected: dict[str, str]) -> str | None:
    """None if `root` holds exactly `expected`, else what is wrong."""
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            if os.path.islink(os.path.join(dirpath, name)):
                return f"unexpected symlink {name}"
        for name in filenames:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if rel not in expected:
                return f"unexpected file {rel}"
            if full.is_symlink():
                return f"unexpected symlink {rel}"
            if file_sha256(full) != expected[rel]:
                return f"{rel} does not match its recorded sha256"
            seen.add(rel)
    missing = sorted(set(expected) - seen)
    return f"missing {missing[0]}" if missing else None


def _extract(zf: zipfile.ZipFile, expected: dict[str, str], dest: Path) -> None:
    for rel in sorted(expected):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        data = zf.read(NATIVE_PREFIX + rel)
        if hashlib.sha256(data).hexdigest() != expected[rel]:
            raise ArtifactError(f"artifact member {rel} does not match its record")
        with open(target, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(target, 0o555 if rel.endswith(".so") else 0o444)


def ensure_native(archive: Path, base: Path | None = None) -> tuple[Path, Record]:
    base = base or runtime_base()
    with zipfile.ZipFile(archive) as zf:
        record = Record.from_json(zf.read(RECORD_NAME))
        held = set(zf.namelist())  # a node profile holds only the natives a node loads
        expected = {r: h for r, h in record.native_files.items() if NATIVE_PREFIX + r in held}
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        final = base / record.build_id[:32]
        for _ in range(_ATTEMPTS):
            if final.exists():
                problem = verify_tree(final, expected)
                if problem is None:
                    return final, record
                print(f"zosnode: runtime {final} rejected ({problem}); rebuilding", file=sys.stderr)
                remove_tree(final)
            try:
                with new_tree(final) as tmp:
                    _extract(zf, expected, Path(tmp))
            except OSError:
                continue  # another starter won the rename (or left a tree): check theirs
        raise ArtifactError(f"could not prepare native runtime under {base}")


def activate(archive: Path) -> None:
    """Make the native modules of `archive` importable. Called by __main__."""
    sys.dont_write_bytecode = True  # nothing may add files beside verified ones
    native_dir, _ = ensure_native(archive)
    sys.path.insert(0, str(native_dir))
