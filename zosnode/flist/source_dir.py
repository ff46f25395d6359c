"""Build a tree from a directory on disk (lstat only; symlinks are never followed)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from zosnode.flist.errors import FlistInputError, FormatError
from zosnode.flist.format import Kind, check_name
from zosnode.flist.tree import Content, Node, Tree

_KINDS = {
    stat.S_IFDIR: Kind.DIR, stat.S_IFREG: Kind.REG, stat.S_IFLNK: Kind.SYMLINK,
    stat.S_IFCHR: Kind.CHR, stat.S_IFBLK: Kind.BLK, stat.S_IFIFO: Kind.FIFO,
}


def read_xattrs(path: bytes) -> dict[bytes, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for n in names:
        try:
            out[n.encode("utf-8", "surrogateescape")] = os.getxattr(
                path, n, follow_symlinks=False
            )
        except OSError:
            continue
    return out


def node_from_stat(path: bytes, st: os.stat_result, skipped: list[str]) -> Node | None:
    fmt = stat.S_IFMT(st.st_mode)
    kind = _KINDS.get(fmt)
    if kind is None:
        # Sockets belong to a running process, not to an image.
        skipped.append(os.fsdecode(path))
        return None
    node = Node(
        kind, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
        mtime_ns=st.st_mtime_ns, xattrs=read_xattrs(path),
    )
    if kind is Kind.REG:
        node.content = Content.of_path(path, st.st_size)
    elif kind is Kind.SYMLINK:
        node.target = os.readlink(path)
    elif kind in (Kind.CHR, Kind.BLK):
        node.rdev = st.st_rdev
    return node


def tree_from_dir(root: str | os.PathLike[str], skipped: list[str] | None = None) -> Tree:
    skipped = skipped if skipped is not None else []
    top = os.fsencode(Path(root))
    try:
        st = os.lstat(top)
    except OSError as exc:
        raise FlistInputError(f"cannot read {os.fsdecode(top)}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise FlistInputError(f"{os.fsdecode(top)} is not a directory")
    tree = Tree()
    root_node = node_from_stat(top, st, skipped)
    assert root_node is not None
    tree.put((), root_node)
    seen: dict[tuple[int, int], Node] = {}
    stack: list[tuple[bytes, Node]] = [(top, tree.root)]
    while stack:
        dpath, dnode = stack.pop()
        assert dnode.children is not None
        try:
            names = os.listdir(dpath)
        except OSError as exc:
            raise FlistInputError(f"cannot list {os.fsdecode(dpath)}: {exc.strerror}") from None
        for name in names:
            try:
                check_name(name)
            except FormatError as exc:
                raise FlistInputError(f"in {os.fsdecode(dpath)}: {exc}") from None
            path = dpath + b"/" + name
            cst = os.lstat(path)
            key = (cst.st_dev, cst.st_ino)
            if not stat.S_ISDIR(cst.st_mode) and cst.st_nlink > 1 and key in seen:
                dnode.children[name] = seen[key]
                continue
            node = node_from_stat(path, cst, skipped)
            if node is None:
                continue
            if not stat.S_ISDIR(cst.st_mode) and cst.st_nlink > 1:
                seen[key] = node
            dnode.children[name] = node
            if node.kind is Kind.DIR:
                stack.append((path, node))
    return tree
