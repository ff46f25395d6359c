"""What a path of the shared layout names: the inverse of `zosnode.layout`'s builders.

A hub tells an object's URL (or storage key) from every other with
`parse_path`; a node only builds paths, so this lives on the hub's side. It
spells no name of its own: every part is one of the layout's names, and a
parsed path is rebuilt by its builder, so it is exactly the path that builder
makes (or None).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from zosnode import layout
from zosnode.hub import paths
from zosnode.layout import LayoutError


class ObjectKind(enum.Enum):
    """The kinds of object; the value is its folder under the layout (for a hub,
    also its route's name)."""

    BLOCK = layout.BLOCKS
    FLIST = layout.FLISTS
    TAG = paths.TAGS
    ROOT = layout.ROOTS
    MANIFEST = f"{layout.CHANNELS}/{layout.MANIFEST}"
    RELEASE = f"{layout.CHANNELS}/{paths.RELEASES}"
    BOOT = paths.BOOT

    @property
    def folder(self) -> str:
        return self.value.split("/", 1)[0]

    @property
    def immutable(self) -> bool:
        """Content-addressed or versioned: what a path names never changes."""
        return self in (ObjectKind.BLOCK, ObjectKind.FLIST, ObjectKind.ROOT, ObjectKind.RELEASE)


@dataclass(frozen=True)
class ObjectPath:
    """A path of the layout, parsed: `path` is exactly what the builders make."""

    kind: ObjectKind
    path: str
    object_id: str | None = None  # blocks and flists
    version: int | None = None  # roots and releases
    channel: str | None = None  # manifests, releases, boot files
    name: str | None = None  # tags and boot files


def parse_version(text: str) -> int:
    """A version as written in a path: decimal, no leading zero, 1 .. 2**63 - 1."""
    if not text.isascii() or not text.isdigit() or len(text) > 19 or (
            len(text) > 1 and text[0] == "0"):
        raise LayoutError(f"bad version: {text[:40]!r}")
    version = int(text)
    if not 0 < version <= layout.MAX_VERSION:
        raise LayoutError(f"version out of range: {version}")
    return version


def root_version(name: str) -> int | None:
    """The version a file name in roots/ holds (`7.root`), or None."""
    return _version_of(name, layout.ROOT_SUFFIX)


def release_version(name: str) -> int | None:
    """The version a file name in a channel's releases/ holds (`7.manifest`), or None."""
    return _version_of(name, paths.RELEASE_SUFFIX)


def _version_of(name: str, suffix: str) -> int | None:
    if not name.endswith(suffix):
        return None
    try:
        return parse_version(name.removesuffix(suffix))
    except LayoutError:
        return None


def parse_path(path: str) -> ObjectPath | None:
    """What a relative layout path (a storage key) names, or None."""
    parts = path.split("/")
    try:
        match parts:
            case [layout.BLOCKS, prefix, oid] if oid[:2] == prefix:
                return ObjectPath(ObjectKind.BLOCK, layout.block_path(oid), object_id=oid)
            case [layout.FLISTS, oid]:
                return ObjectPath(ObjectKind.FLIST, layout.flist_path(oid), object_id=oid)
            case [layout.ROOTS, name] if name.endswith(layout.ROOT_SUFFIX):
                version = parse_version(name.removesuffix(layout.ROOT_SUFFIX))
                return ObjectPath(ObjectKind.ROOT, layout.root_path(version), version=version)
            case [paths.TAGS, name]:
                return ObjectPath(ObjectKind.TAG, paths.tag_path(name), name=name)
            case [paths.BOOT, channel, name]:
                return ObjectPath(ObjectKind.BOOT, paths.boot_path(channel, name),
                                  channel=channel, name=name)
            case [layout.CHANNELS, channel, layout.MANIFEST]:
                return ObjectPath(ObjectKind.MANIFEST, layout.manifest_path(channel),
                                  channel=channel)
            case [layout.CHANNELS, channel, paths.RELEASES, name] \
                    if name.endswith(paths.RELEASE_SUFFIX):
                version = parse_version(name.removesuffix(paths.RELEASE_SUFFIX))
                return ObjectPath(ObjectKind.RELEASE, paths.release_path(channel, version),
                                  version=version, channel=channel)
    except LayoutError:
        return None
    return None


def parse_url_path(url_path: str) -> ObjectPath | None:
    """What a URL path (`/blocks/ab/ab…`) names, or None (no other leading slashes)."""
    if not url_path.startswith("/"):
        return None
    return parse_path(url_path[1:])
