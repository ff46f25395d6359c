"""Build an flist from a source on disk: pick the reader, pack, store blocks."""

from __future__ import annotations

import os
import tarfile
from collections.abc import Sequence
from typing import Any

from zosnode.flist.errors import FlistInputError
from zosnode.flist.format import Flist
from zosnode.flist.pack import BuildOptions, BuildStats, Progress, build
from zosnode.flist.source_dir import tree_from_dir
from zosnode.flist.source_oci import is_oci_dir, is_oci_tar, tree_from_oci
from zosnode.flist.source_tar import Spool, tree_from_tar
from zosnode.flist.store import LocalStore
from zosnode.flist.writer import EncodedBlock


def detect(source: str) -> str:
    if os.path.isdir(source):
        return "oci" if is_oci_dir(source) else "dir"
    if not os.path.exists(source):
        raise FlistInputError(f"no such file or directory: {source}")
    if not tarfile.is_tarfile(source):
        raise FlistInputError(f"{source} is neither a directory nor a tar archive")
    return "oci" if is_oci_tar(source) else "tar"


def build_from(
    source: str,
    store: LocalStore,
    options: BuildOptions | None = None,
    *,
    kind: str = "auto",
    prefetch_paths: Sequence[bytes] = (),
    progress: Progress | None = None,
) -> tuple[Flist, BuildStats]:
    """Build `source` (a directory, tarball or OCI image) into `store`; blocks only if new."""
    if kind == "auto":
        kind = detect(source)
    metadata: dict[str, Any] = {}
    skipped: list[str] = []

    def sink(block: EncodedBlock) -> bool:
        return store.put_block(block.stored, block.id)[1]

    with Spool() as spool:
        if kind == "dir":
            tree = tree_from_dir(source, skipped)
        elif kind == "tar":
            tree = tree_from_tar(source, spool)
        elif kind == "oci":
            tree, metadata = tree_from_oci(source, spool)
        else:
            raise FlistInputError(f"unknown source type {kind!r}")
        flist, stats = build(
            tree, sink, options, metadata=metadata, prefetch_paths=prefetch_paths,
            progress=progress,
        )
    stats.skipped.extend(skipped)
    return flist, stats
