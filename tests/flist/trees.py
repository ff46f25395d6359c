"""Test trees with every kind of entry, and an exact comparison of two trees."""

from __future__ import annotations

import os
import stat
from pathlib import Path

ODD_NAMES = ["with space", "ünïcødé-名前", "new\nline", "tab\there", "-dash", "quote'\""]


def make_rich_tree(root: Path, big: int = 3 * 1024 * 1024 + 17) -> None:
    """Directories, files (empty, small, large, sparse), symlinks, hardlinks,
    devices, fifos, xattrs incl. security.capability, owners, odd names."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "empty").write_bytes(b"")
    (root / "small.txt").write_bytes(b"hello flist\n")
    for i, name in enumerate(ODD_NAMES):
        (root / name).write_bytes(f"odd {i}\n".encode())
    # Not UTF-8: names are bytes, and must survive as bytes.
    with open(os.path.join(os.fsencode(root), b"latin1-\xe9t\xe9"), "wb") as f:
        f.write(b"bytes name")
    d = root / "dir" / "sub" / "deeper"
    d.mkdir(parents=True)
    (d / "leaf").write_bytes(os.urandom(5000))
    big_data = os.urandom(big)
    (root / "large.bin").write_bytes(big_data)
    # Same bytes again: dedupes to the same blocks.
    (root / "dir" / "large-copy.bin").write_bytes(big_data)
    with open(root / "sparse.img", "wb") as f:
        f.seek(5 * 1024 * 1024)
        f.write(b"middle")
        f.truncate(12 * 1024 * 1024)
    many = root / "many"
    many.mkdir()
    for i in range(300):
        (many / f"f{i:03d}").write_bytes(os.urandom(i * 7) + b"x")
    (root / "link-rel").symlink_to("small.txt")
    (root / "link-abs").symlink_to("/etc/passwd")
    (root / "link-dangling").symlink_to("../../nowhere/at/all")
    os.link(root / "small.txt", root / "dir" / "hard-small")
    os.link(root / "large.bin", root / "hard-large")
    os.mkfifo(root / "fifo")
    (root / "setuid").write_bytes(b"#!/bin/true\n")
    os.chmod(root / "setuid", 0o4755)
    os.chmod(root / "dir" / "sub", 0o2750)
    (root / "owned").write_bytes(b"mine")
    os.setxattr(root / "small.txt", "user.comment", b"a note")
    os.setxattr(root / "dir", "user.dir", b"\x00\x01binary")
    if os.geteuid() == 0:
        os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.mknod(root / "loop9", stat.S_IFBLK | 0o660, os.makedev(7, 9))
        os.chown(root / "owned", 1234, 5678)
        os.lchown(root / "link-rel", 42, 43)
        # cap_net_bind_service=+ep, as setcap writes it (VFS_CAP_REVISION_2).
        cap = bytes.fromhex("01000002" "00040000" "00000000" "00000000" "00000000")
        os.setxattr(root / "setuid", "security.capability", cap)
        os.setxattr(root / "null", "trusted.note", b"dev xattr")
    os.utime(root / "small.txt", ns=(1, 1_600_000_000_123_456_789))
    os.utime(root / "link-rel", ns=(1, 1_500_000_000_000_000_001), follow_symlinks=False)
    os.utime(d, ns=(1, 1_400_000_000_000_000_000))


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything an extraction must preserve, by relative path (atime aside)."""
    out: dict[str, tuple[object, ...]] = {}
    inodes: dict[tuple[int, int], str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        filenames.sort()
        names = [*dirnames, *filenames]
        for name in [".", *names] if dirpath == str(root) else names:
            p = os.path.normpath(os.path.join(dirpath, name))
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            xattrs = tuple(
                sorted((n, os.getxattr(p, n, follow_symlinks=False))
                       for n in os.listxattr(p, follow_symlinks=False))
            )
            content: object = None
            if stat.S_ISREG(st.st_mode):
                content = Path(p).read_bytes()
                key = (st.st_dev, st.st_ino)
                # Hardlink groups compare by their first path, not inode numbers.
                content = (inodes.setdefault(key, rel), content) if st.st_nlink > 1 else content
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(p)
            out[rel] = (
                st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_nlink,
                st.st_mtime_ns, st.st_rdev if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                else 0, xattrs, content,
            )
    return out


def assert_same_tree(a: Path, b: Path) -> None:
    sa, sb = snapshot(a), snapshot(b)
    assert sorted(sa) == sorted(sb), set(sa) ^ set(sb)
    for rel in sa:
        assert sa[rel] == sb[rel], rel
