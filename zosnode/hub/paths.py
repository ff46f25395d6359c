"""The shared layout's paths that only hubs and their tools use: tags, release records
and boot files. A node asks for blocks, flists, roots and manifests (`zosnode.layout`,
the node's part); the checks here keep a path in its folder the same way.
"""

from __future__ import annotations

import re

from zosnode.layout import CHANNELS, LayoutError, check_channel, check_version

# Top-level folders of the layout besides the node's.
TAGS = "tags"
BOOT = "boot"

# A channel's folder of past manifests, and the suffix of a release record.
RELEASES = "releases"
RELEASE_SUFFIX = ".manifest"

KERNEL = "vmlinuz"
INITRD = "initramfs.img"
UKI = "zosnode.efi"  # the signed unified kernel image (`zosnode bootstrap uki`)
# What `initramfs build` and `bootstrap uki` write; the operator places them (no API).
BOOT_FILES = (KERNEL, INITRD, UKI)

# The flist store's tag names: a tag file is named by its tag.
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_tag(value: str) -> str:
    if _TAG.fullmatch(value) is None:
        raise LayoutError(f"bad tag name: {value[:80]!r}")
    return value


def is_tag(value: str) -> bool:
    return _TAG.fullmatch(value) is not None


def tag_path(name: str) -> str:
    return f"{TAGS}/{check_tag(name)}"


def releases_folder(channel: str) -> str:
    return f"{CHANNELS}/{check_channel(channel)}/{RELEASES}"


def release_path(channel: str, version: int) -> str:
    return f"{releases_folder(channel)}/{check_version(version)}{RELEASE_SUFFIX}"


def boot_path(channel: str, name: str) -> str:
    if name not in BOOT_FILES:
        raise LayoutError(f"not a boot file: {name[:40]!r}")
    return f"{BOOT}/{check_channel(channel)}/{name}"
