"""What a farmer asks for on the boot media page, checked. Pure.

A request names a farm, a channel, a kind of medium and, in the expert
section, extra kernel arguments. The arguments are held to what a node
accepts: `zos.*` keys go through the node's own command-line parser
(`zosnode.agent.cmdline.parse`), so a key the node would ignore or refuse
(a trust key above all) is refused here with the node's own words; other
words must be on a short allow-list of kernel options. Whatever passes is
also a valid `BootConfig` (no character iPXE would expand).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from zosnode import layout
from zosnode.agent import cmdline
from zosnode.bootmedia.errors import BuildInputError
from zosnode.bootmedia.ipxe import BootConfig, kernel_cmdline
from zosnode.hub.web.errors import PageInputError

# Bumped when the media a request yields change for the same inputs.
MEDIA_FORMAT = 1
MAX_ARGS = 16
MAX_ARGS_TEXT = 512
FARM_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# zos.* keys the expert section may set; farm and channel have their own fields.
ZOS_KEYS = ("zos.hub", "zos.net", "zos.debug")
KERNEL_OPTIONS = (
    re.compile(r"quiet"),
    re.compile(r"nomodeset"),
    re.compile(r"loglevel=[0-7]"),
    re.compile(r"console=(tty[0-9]{1,2}|ttyS[0-9]{1,2}(,[0-9]{4,7}(n8)?)?)"),
    re.compile(r"mitigations=(auto|off|auto,nosmt)"),
)
ALLOWED_TEXT = ("zos.hub=URL, zos.net=NIC, zos.debug; quiet, nomodeset, loglevel=0-7, "
                "console=ttyS0,115200, mitigations=auto|off|auto,nosmt")


@dataclass(frozen=True)
class Kind:
    name: str  # the query value
    title: str
    filename: str
    content_type: str
    instructions: str


KINDS: Mapping[str, Kind] = {k.name: k for k in (
    Kind("ipxe", "iPXE script", "boot.ipxe", "text/plain; charset=utf-8",
         "Chain it from an existing PXE or iPXE server: point its boot filename or "
         "`chain` command at this script's download URL (it fetches the kernel and "
         "initramfs from this hub, retrying forever)."),
    Kind("iso", "Hybrid ISO (BIOS and UEFI)", "zosnode.iso", "application/octet-stream",
         "Boot it as a CD image (virtual media, a VM), or write it to a USB stick: "
         "`dd if=zosnode.iso of=/dev/sdX bs=4M conv=fsync` (replace sdX with the "
         "stick, every byte on it is lost)."),
    Kind("usb", "USB image", "zosnode-usb.img", "application/octet-stream",
         "Write it to a USB stick: `dd if=zosnode-usb.img of=/dev/sdX bs=4M conv=fsync` "
         "(the same bytes as the ISO; boots BIOS and UEFI machines)."),
    Kind("efi-img", "EFI system partition image", "zosnode-efi.img",
         "application/octet-stream",
         "A FAT image with EFI/BOOT/BOOTX64.EFI: write it to a small partition of type "
         "EFI System, or give it to a VM as a disk."),
    Kind("efi", "EFI binary", "BOOTX64.EFI", "application/efi",
         "Copy it to EFI/BOOT/BOOTX64.EFI on a FAT partition, or serve it as the UEFI "
         "HTTP-boot or PXE boot file."),
)}


@dataclass(frozen=True)
class MediaRequest:
    farm: str
    channel: str
    kind: str
    extra: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not FARM_RE.fullmatch(self.farm):
            raise PageInputError(
                f"farm id {_shown(self.farm)}: use 1-64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit")
        try:
            layout.check_channel(self.channel)
        except layout.LayoutError:
            raise PageInputError(
                f"channel {_shown(self.channel)}: use 1-64 lower-case letters, digits, "
                "'.', '_' or '-'") from None
        if self.kind not in KINDS:
            raise PageInputError(f"kind {_shown(self.kind)}: choose one of "
                                  + ", ".join(KINDS))

    def config(self, hub: str) -> BootConfig:
        """The boot configuration for media served by `hub` (as the client reached it)."""
        try:
            return BootConfig(farm=self.farm, channel=self.channel, hubs=(hub,),
                              extra_args=self.extra)
        except BuildInputError as exc:
            raise PageInputError(str(exc)) from None

    def cmdline(self, hub: str) -> str:
        return kernel_cmdline(self.config(hub))

    def key(self, hub: str, boot_hashes: tuple[str, str]) -> str:
        """The cache key: everything the medium's bytes depend on."""
        parts = [MEDIA_FORMAT, self.kind, self.farm, self.channel, hub, list(self.extra),
                 list(boot_hashes)]
        return hashlib.blake2b(json.dumps(parts).encode(), digest_size=16).hexdigest()

    def query(self) -> list[tuple[str, str]]:
        return [("farm", self.farm), ("channel", self.channel), ("kind", self.kind),
                ("args", " ".join(self.extra))]


def _shown(value: str) -> str:
    return repr(value if len(value) <= 64 else value[:61] + "...")


def check_kernel_args(text: str) -> tuple[str, ...]:
    """The extra kernel arguments in `text`, or PageInputError saying which and why."""
    if len(text) > MAX_ARGS_TEXT:
        raise PageInputError(f"extra kernel arguments: at most {MAX_ARGS_TEXT} characters")
    words = cmdline.tokens(text)
    if len(words) > MAX_ARGS:
        raise PageInputError(f"extra kernel arguments: at most {MAX_ARGS}")
    for word in words:
        key = word.partition("=")[0]
        if key.lower().startswith("zos."):
            notes = cmdline.parse(word).notes
            if notes:  # what the node itself would say, booted with it
                raise PageInputError(f"kernel argument {_shown(word)}: {notes[0]}")
            if key in ("zos.farm", "zos.channel"):
                raise PageInputError(f"kernel argument {_shown(word)}: set {key[4:]} with "
                                     "its own field")
            if key not in ZOS_KEYS:
                raise PageInputError(f"kernel argument {_shown(word)}: only "
                                     + ", ".join(ZOS_KEYS) + " may be given here")
        elif not any(p.fullmatch(word) for p in KERNEL_OPTIONS):
            raise PageInputError(f"kernel argument {_shown(word)} is not allowed; allowed: "
                                  + ALLOWED_TEXT)
    return tuple(words)


def parse_query(query: Mapping[str, str]) -> MediaRequest:
    """The media request in a page's GET query (farm, channel, kind, args)."""
    farm = query.get("farm", "").strip()
    if not farm:
        raise PageInputError("give a farm id")
    return MediaRequest(farm=farm, channel=query.get("channel", "stable").strip() or "stable",
                        kind=query.get("kind", "iso").strip() or "iso",
                        extra=check_kernel_args(query.get("args", "")))
