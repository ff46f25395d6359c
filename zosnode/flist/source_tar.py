"""Build a tree from tar archives (plain, gzip, xz, bz2), also used for OCI layers.

Archive contents are data from outside: a member whose path escapes with
'..', a hardlink to nothing, or an unknown member type is refused with
FlistDataError. Contents are spooled (small ones in memory, large ones to a
private temporary directory) so that files overwritten by later layers cost
no blocks, and the packer can read them in tree order.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import tempfile
from decimal import Decimal, InvalidOperation
from typing import IO, BinaryIO

from zosnode.flist.errors import FlistDataError, FlistInputError
from zosnode.flist.format import Kind
from zosnode.flist.tree import Content, Node, Tree, split_path

_IN_MEMORY = 64 * 1024
_WHITEOUT = b".wh."
_OPAQUE = b".wh..wh..opq"
_ENC = "utf-8"
_ERR = "surrogateescape"


class Spool:
    """Holds archive file contents until the packer reads them."""

    def __init__(self) -> None:
        self._dir: str | None = None
        self._n = 0

    def add(self, src: IO[bytes], size: int) -> Content:
        if size <= _IN_MEMORY:
            data = src.read(size)
            if len(data) != size:
                raise FlistDataError("archive member is shorter than its header says")
            return Content.of_bytes(data)
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="zosnode-spool-")
        self._n += 1
        path = os.path.join(self._dir, str(self._n))
        with open(path, "wb") as out:
            copied = 0
            while copied < size:
                buf = src.read(min(1 << 20, size - copied))
                if not buf:
                    raise FlistDataError("archive member is shorter than its header says")
                out.write(buf)
                copied += len(buf)
        return Content.of_path(path, size)

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_tar(path: str | os.PathLike[str] | None = None, fileobj: BinaryIO | None = None
             ) -> tarfile.TarFile:
    try:
        return tarfile.open(
            name=path, fileobj=fileobj, mode="r:*", encoding=_ENC, errors=_ERR
        )
    except FileNotFoundError:
        raise FlistInputError(f"no such file: {path}") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise FlistDataError(f"not a readable tar archive: {exc}") from None


def _mtime_ns(info: tarfile.TarInfo) -> int:
    raw = info.pax_headers.get("mtime")
    if raw is not None:
        try:
            return int(Decimal(raw) * 1_000_000_000)
        except InvalidOperation:
            raise FlistDataError(f"bad pax mtime {raw!r}") from None
    return int(info.mtime) * 1_000_000_000


def _xattrs(info: tarfile.TarInfo) -> dict[bytes, bytes]:
    out = {}
    for key, value in info.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            name = key[len("SCHILY.xattr."):].encode(_ENC, _ERR)
            out[name] = value.encode(_ENC, _ERR)
    return out


def apply_tar(tree: Tree, tar: tarfile.TarFile, spool: Spool, *, layer: bool = False) -> None:
    """Apply every member of `tar` to `tree`; with `layer`, honour OCI whiteouts."""
    added: set[tuple[bytes, ...]] = set()
    try:
        for info in tar:
            _apply_member(tree, tar, info, spool, layer, added)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise FlistDataError(f"archive is damaged: {exc}") from None


def _apply_member(
    tree: Tree, tar: tarfile.TarFile, info: tarfile.TarInfo, spool: Spool, layer: bool,
    added: set[tuple[bytes, ...]],
) -> None:
    parts = split_path(info.name.encode(_ENC, _ERR))
    if layer and parts and parts[-1].startswith(_WHITEOUT):
        parent = parts[:-1]
        if parts[-1] == _OPAQUE:
            # Opaque: hide everything below from lower layers, keep this layer's own.
            opaque = tree.get(parent)
            if opaque is not None and opaque.children is not None:
                for name in list(opaque.children):
                    if parent + (name,) not in added:
                        del opaque.children[name]
        else:
            tree.remove(parent + (parts[-1][len(_WHITEOUT):],))
        return
    added.add(parts)

    def node(kind: Kind) -> Node:
        return Node(
            kind, mode=stat.S_IMODE(info.mode), uid=info.uid, gid=info.gid,
            mtime_ns=_mtime_ns(info), xattrs=_xattrs(info),
        )

    if info.isdir():
        tree.put(parts, node(Kind.DIR))
    elif info.isreg():
        src = tar.extractfile(info)
        assert src is not None
        n = node(Kind.REG)
        n.content = spool.add(src, info.size)
        tree.put(parts, n)
    elif info.issym():
        n = node(Kind.SYMLINK)
        n.target = info.linkname.encode(_ENC, _ERR)
        if not n.target:
            raise FlistDataError(f"symlink {info.name!r} has an empty target")
        tree.put(parts, n)
    elif info.islnk():
        target_parts = split_path(info.linkname.encode(_ENC, _ERR))
        linked = tree.get(target_parts)
        if linked is None or linked.kind is Kind.DIR:
            raise FlistDataError(f"hardlink {info.name!r} points at missing {info.linkname!r}")
        if parts:
            tree.put(parts, linked)
    elif info.ischr() or info.isblk():
        n = node(Kind.CHR if info.ischr() else Kind.BLK)
        n.rdev = os.makedev(info.devmajor, info.devminor)
        tree.put(parts, n)
    elif info.isfifo():
        tree.put(parts, node(Kind.FIFO))
    else:
        raise FlistDataError(f"archive member {info.name!r} has unsupported type {info.type!r}")


def tree_from_tar(path: str | os.PathLike[str], spool: Spool) -> Tree:
    tree = Tree()
    with open_tar(path) as tar:
        apply_tar(tree, tar, spool)
    return tree
