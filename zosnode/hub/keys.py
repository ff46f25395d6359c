"""Object keys of the shared data layout, validated before any storage sees them.

A key is also the URL path (without the leading slash) on a hub or a static
mirror, so a key that parses here is exactly a file nginx would serve.
Nothing outside these shapes reaches the storage backends: no "..", no
absolute paths, no surprises in S3 object names.
"""

from __future__ import annotations

import re

from zosnode.errors import ZosError

_HEX64 = re.compile(r"[0-9a-f]{64}")
_CHANNEL = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
# The flist store's tag names (zosnode.flist.store), so tags/ files match.
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_MAX_VERSION = 2**53


class KeyError_(ZosError):
    """A name that is not a valid object id, version or channel."""


def is_hex_id(value: str) -> bool:
    return _HEX64.fullmatch(value) is not None


def check_id(value: str) -> str:
    if not is_hex_id(value):
        raise KeyError_(f"not a 64-hex-digit id: {value[:80]!r}")
    return value


def check_channel(value: str) -> str:
    if _CHANNEL.fullmatch(value) is None or ".." in value:
        raise KeyError_(f"bad channel name: {value[:80]!r}")
    return value


def parse_version(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 16 or (
            len(text) > 1 and text[0] == "0"):
        raise KeyError_(f"bad version: {text[:40]!r}")
    version = int(text)
    if not 0 < version <= _MAX_VERSION:
        raise KeyError_(f"version out of range: {version}")
    return version


def check_tag(value: str) -> str:
    if _TAG.fullmatch(value) is None:
        raise KeyError_(f"bad tag name: {value[:80]!r}")
    return value


def tag_key(name: str) -> str:
    return f"tags/{check_tag(name)}"


def block_key(block_id: str) -> str:
    check_id(block_id)
    return f"blocks/{block_id[:2]}/{block_id}"


def flist_key(flist_id: str) -> str:
    return f"flists/{check_id(flist_id)}"


def root_key(version: int) -> str:
    return f"roots/{version}.root"


def manifest_key(channel: str) -> str:
    return f"channels/{check_channel(channel)}/manifest"


# What `zosnode initramfs build` writes; the operator places them in the data
# directory (they are not published through the API).
BOOT_FILES = ("vmlinuz", "initramfs.img")


def boot_key(channel: str, name: str) -> str:
    if name not in BOOT_FILES:
        raise KeyError_(f"not a boot file: {name[:40]!r}")
    return f"boot/{check_channel(channel)}/{name}"


def release_key(channel: str, version: int) -> str:
    return f"channels/{check_channel(channel)}/releases/{version}.manifest"


# Kinds of static object, by how they may be cached.
IMMUTABLE = "immutable"  # content-addressed or versioned: never changes
MUTABLE = "mutable"  # a channel's current manifest, a tag: revalidate


def parse_static(path: str) -> tuple[str, str, str] | None:
    """(key, route label, kind) for a static URL path, or None."""
    if not path.startswith("/") or path.startswith("//"):
        return None
    parts = path[1:].split("/")
    try:
        match parts:
            case ["blocks", prefix, block_id] if block_id[:2] == prefix:
                return block_key(block_id), "/blocks", IMMUTABLE
            case ["flists", flist_id]:
                return flist_key(flist_id), "/flists", IMMUTABLE
            case ["roots", name] if name.endswith(".root"):
                return root_key(parse_version(name.removesuffix(".root"))), "/roots", IMMUTABLE
            case ["tags", name]:
                return tag_key(name), "/tags", MUTABLE
            case ["boot", channel, name]:
                return boot_key(channel, name), "/boot", MUTABLE
            case ["channels", channel, "manifest"]:
                return manifest_key(channel), "/channels/manifest", MUTABLE
            case ["channels", channel, "releases", name] if name.endswith(".manifest"):
                version = parse_version(name.removesuffix(".manifest"))
                return release_key(channel, version), "/channels/releases", IMMUTABLE
    except KeyError_:
        return None
    return None


def content_id(key: str) -> str | None:
    """The id a content-addressed key names (blocks and flists), else None."""
    if key.startswith(("blocks/", "flists/")):
        return key.rsplit("/", 1)[1]
    return None
