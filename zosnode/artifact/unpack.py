"""The artifact's native extensions (a zip cannot hold them) on disk, on sys.path only if the
tree is exactly the record's; else rebuilt and renamed in (a racing loser verifies the winner's)."""

import hashlib
import os
import sys
import zipimport
from collections.abc import Callable
from pathlib import Path

from zosnode.artifact.record import NATIVE_PREFIX, RECORD_NAME, ArtifactError, Record, file_sha256
from zosnode.atomicfile import new_tree, remove_tree, write_atomic

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


def verify_tree(root: Path, expected: dict[str, str], hashed: bool = True) -> str | None:
    """None if `root` holds exactly `expected` (unhashed: some of it), else what is wrong."""
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if full.is_symlink():
                return f"unexpected symlink {rel}"
            if name in dirnames:
                continue
            if rel not in expected:
                return f"unexpected file {rel}"
            if hashed and file_sha256(full) != expected[rel]:
                return f"{rel} does not match its recorded sha256"
            seen.add(rel)
    missing = sorted(set(expected) - seen) if hashed else []
    return f"missing {missing[0]}" if missing else None


def _extract(read: Callable[[str], bytes], expected: dict[str, str], dest: Path) -> None:
    for rel in sorted(expected):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        data = read(NATIVE_PREFIX + rel)
        if hashlib.sha256(data).hexdigest() != expected[rel]:
            raise ArtifactError(f"artifact member {rel} does not match its record")
        write_atomic(target, data, mode=0o555 if rel.endswith(".so") else 0o444, durable=False)


def ensure_native(archive: Path, base: Path | None = None) -> tuple[Path, Record]:
    import zipfile  # not at the top: PID 1 (image_natives) has no use for it

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
                    _extract(zf.read, expected, Path(tmp))
            except OSError:
                continue  # another starter won the rename (or left a tree): check theirs
        raise ArtifactError(f"could not prepare native runtime under {base}")


def image_natives(archive: Path, base: Path | None = None) -> Path | None:
    """PID 1's boot image's tree (its builder checked it), if it holds recorded files only: only
    the kernel has written it yet, and the image checked against itself proves nothing."""
    record = Record.from_json(zipimport.zipimporter(str(archive)).get_data(RECORD_NAME))
    tree = (base or runtime_base()) / record.build_id[:32]
    return tree if tree.is_dir() and verify_tree(tree, record.native_files, False) is None else None


def activate(archive: Path) -> None:
    """Make the native modules of `archive` importable. Called by __main__."""
    sys.dont_write_bytecode = True  # nothing may add files beside verified ones
    native_dir = image_natives(archive) if os.getpid() == 1 else None
    sys.path.insert(0, str(native_dir or ensure_native(archive)[0]))
