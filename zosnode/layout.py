"""The shared data layout, pure: the relative paths a hub, S3, a mirror and a local store
share, the URLs a node asks for (docs/hub-api.md, Static paths). Each builder checks
every part, so no "..", "/" or absolute name reaches a backend or a URL (the inverse:
`zosnode.hub.objects.parse_path`; hub-only paths: `zosnode.hub.paths`). An id is 64
lowercase hex digits, as every 256-bit id zosnode writes: `is_hex_id` is the one check."""

import hashlib
import re

from zosnode.errors import UsageError

BLOCKS, FLISTS, ROOTS, CHANNELS = "blocks", "flists", "roots", "channels"
MANIFEST, ROOT_SUFFIX = "manifest", ".root"

_HEX_ID = re.compile(r"[0-9a-f]{64}")
_CHANNEL = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MAX_VERSION = 2**63 - 1  # trust.schema's integer bound: every version has a path


class LayoutError(UsageError):
    """Not a valid id, version, channel, tag or boot file: a path that cannot exist."""


def object_id(data: bytes | memoryview) -> str:
    return hashlib.blake2b(data, digest_size=32).hexdigest()


def is_hex_id(value: object) -> bool:
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


def check_version(version: int) -> int:
    if type(version) is not int or not 0 < version <= MAX_VERSION:  # a bool is not a version
        raise LayoutError(f"version out of range: {version!r}")
    return version


def block_path(block_id: str) -> str:
    return f"{BLOCKS}/{sharded(block_id)}"


def flist_path(flist_id: str) -> str:
    return f"{FLISTS}/{check_id(flist_id)}"


def root_path(version: int) -> str:
    return f"{ROOTS}/{check_version(version)}{ROOT_SUFFIX}"


def manifest_path(channel: str) -> str:
    return f"{CHANNELS}/{check_channel(channel)}/{MANIFEST}"

