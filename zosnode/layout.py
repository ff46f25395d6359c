"""The shared data layout and its identifiers: the one spelling for node, hub and store.

A hub's data directory, the S3 bucket behind a hub, a static mirror (nginx
serving a copy of that directory) and a local flist store keep objects at the
same relative paths, which are also the URL paths a node asks for:

    blocks/<id[:2]>/<id>                       stored block bytes
    flists/<id>                                an encoded flist
    tags/<name>                                an flist id and a newline
    roots/<version>.root                       a signed root
    channels/<channel>/manifest                the channel's current signed manifest
    channels/<channel>/releases/<v>.manifest   every manifest the channel has had
    boot/<channel>/vmlinuz, initramfs.img      what iPXE and GRUB load

An object id is BLAKE2b-256 of the object's bytes in 64 lowercase hex
digits. Every 256-bit id zosnode writes (ed25519 key ids, SHA-256 pins of
Debian packages and OCI layers) is spelled the same way, so `is_hex_id` is
the one check of that spelling.

Pure: no I/O. The builders check every part, so a path built here stays in
its folder (no "..", "/" or absolute name reaches a storage backend or a
URL). `parse_path` is their inverse and answers None for anything else,
which is how a hub tells an object's URL from every other.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass

from zosnode.errors import UsageError

# Top-level folders of the layout.
BLOCKS = "blocks"
FLISTS = "flists"
TAGS = "tags"
ROOTS = "roots"
CHANNELS = "channels"
BOOT = "boot"

KERNEL = "vmlinuz"
INITRD = "initramfs.img"
# What `zosnode initramfs build` writes; the operator places them in the data
# directory (they are not published through the API).
BOOT_FILES = (KERNEL, INITRD)

_HEX_ID = re.compile(r"[0-9a-f]{64}")
_CHANNEL = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
# The flist store's tag names: a tag file is named by its tag.
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# The trust documents' integer bound (zosnode.trust.schema), so every version a
# root or manifest may have has a path.
_MAX_VERSION = 2**63 - 1


class LayoutError(UsageError):
    """A name that is not a valid object id, version, channel, tag or boot file: the
    caller asked for a path that cannot exist."""


def object_id(data: bytes) -> str:
    """The id of a block or an flist: BLAKE2b-256 of its bytes, in hex."""
    return hashlib.blake2b(data, digest_size=32).hexdigest()


def is_hex_id(value: object) -> bool:
    """64 lowercase hex digits: how every 256-bit id here is written."""
    return isinstance(value, str) and _HEX_ID.fullmatch(value) is not None


def check_id(value: str) -> str:
    if not is_hex_id(value):
        raise LayoutError(f"not a 64-hex-digit id: {str(value)[:80]!r}")
    return value


def sharded(oid: str) -> str:
    """`<id[:2]>/<id>`: how blocks are spread over folders (in a block cache too)."""
    return f"{check_id(oid)[:2]}/{oid}"


def check_channel(value: str) -> str:
    if _CHANNEL.fullmatch(value) is None or ".." in value:
        raise LayoutError(f"bad channel name: {value[:80]!r}")
    return value


def check_tag(value: str) -> str:
    if _TAG.fullmatch(value) is None:
        raise LayoutError(f"bad tag name: {value[:80]!r}")
    return value


def is_tag(value: str) -> bool:
    return _TAG.fullmatch(value) is not None


def parse_version(text: str) -> int:
    """A version as written in a path: decimal, no leading zero, 1 .. 2**63 - 1."""
    if not text.isascii() or not text.isdigit() or len(text) > 19 or (
            len(text) > 1 and text[0] == "0"):
        raise LayoutError(f"bad version: {text[:40]!r}")
    version = int(text)
    if not 0 < version <= _MAX_VERSION:
        raise LayoutError(f"version out of range: {version}")
    return version


def _check_version(version: int) -> int:
    if isinstance(version, bool) or not isinstance(version, int) \
            or not 0 < version <= _MAX_VERSION:
        raise LayoutError(f"version out of range: {version!r}")
    return version


# -- paths -----------------------------------------------------------------------------


def block_path(block_id: str) -> str:
    return f"{BLOCKS}/{sharded(block_id)}"


def flist_path(flist_id: str) -> str:
    return f"{FLISTS}/{check_id(flist_id)}"


def tag_path(name: str) -> str:
    return f"{TAGS}/{check_tag(name)}"


def root_path(version: int) -> str:
    return f"{ROOTS}/{_check_version(version)}.root"


def manifest_path(channel: str) -> str:
    return f"{CHANNELS}/{check_channel(channel)}/manifest"


def releases_folder(channel: str) -> str:
    return f"{CHANNELS}/{check_channel(channel)}/releases"


def release_path(channel: str, version: int) -> str:
    return f"{releases_folder(channel)}/{_check_version(version)}.manifest"


def boot_folder(channel: str) -> str:
    return f"{BOOT}/{check_channel(channel)}"


def boot_path(channel: str, name: str) -> str:
    if name not in BOOT_FILES:
        raise LayoutError(f"not a boot file: {name[:40]!r}")
    return f"{boot_folder(channel)}/{name}"


def root_version(name: str) -> int | None:
    """The version a file name in roots/ holds (`7.root`), or None."""
    return _version_of(name, ".root")


def release_version(name: str) -> int | None:
    """The version a file name in a channel's releases/ holds (`7.manifest`), or None."""
    return _version_of(name, ".manifest")


def _version_of(name: str, suffix: str) -> int | None:
    if not name.endswith(suffix):
        return None
    try:
        return parse_version(name.removesuffix(suffix))
    except LayoutError:
        return None


# -- parsing ---------------------------------------------------------------------------


class ObjectKind(enum.Enum):
    """The kinds of object; the value is its folder under the layout (for a hub,
    also its route's name)."""

    BLOCK = "blocks"
    FLIST = "flists"
    TAG = "tags"
    ROOT = "roots"
    MANIFEST = "channels/manifest"
    RELEASE = "channels/releases"
    BOOT = "boot"

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


def parse_path(path: str) -> ObjectPath | None:
    """What a relative layout path (a storage key) names, or None."""
    parts = path.split("/")
    try:
        match parts:
            case ["blocks", prefix, oid] if oid[:2] == prefix:
                return ObjectPath(ObjectKind.BLOCK, block_path(oid), object_id=oid)
            case ["flists", oid]:
                return ObjectPath(ObjectKind.FLIST, flist_path(oid), object_id=oid)
            case ["roots", name] if name.endswith(".root"):
                version = parse_version(name.removesuffix(".root"))
                return ObjectPath(ObjectKind.ROOT, root_path(version), version=version)
            case ["tags", name]:
                return ObjectPath(ObjectKind.TAG, tag_path(name), name=name)
            case ["boot", channel, name]:
                return ObjectPath(ObjectKind.BOOT, boot_path(channel, name), channel=channel,
                                  name=name)
            case ["channels", channel, "manifest"]:
                return ObjectPath(ObjectKind.MANIFEST, manifest_path(channel), channel=channel)
            case ["channels", channel, "releases", name] if name.endswith(".manifest"):
                version = parse_version(name.removesuffix(".manifest"))
                return ObjectPath(ObjectKind.RELEASE, release_path(channel, version),
                                  version=version, channel=channel)
    except LayoutError:
        return None
    return None


def parse_url_path(url_path: str) -> ObjectPath | None:
    """What a URL path (`/blocks/ab/ab…`) names, or None (no other leading slashes)."""
    if not url_path.startswith("/"):
        return None
    return parse_path(url_path[1:])
