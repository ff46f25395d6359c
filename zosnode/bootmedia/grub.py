"""The UEFI loader's configuration: GRUB fetching the kernel over HTTP. Pure code.

Debian's iPXE EFI build (2019) cannot take a script from its boot medium, so
UEFI media carry a standalone GRUB with this embedded configuration instead:
DHCP through the firmware's NIC driver, then each plain-HTTP hub in order,
looping until one answers. HTTPS hubs are skipped: GRUB speaks HTTP only.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from zosnode.bootmedia.errors import BuildInputError
from zosnode.bootmedia.ipxe import BootConfig, kernel_cmdline
from zosnode.hub import paths as layout

MODULES = ("normal", "configfile", "echo", "sleep", "test", "true", "net", "efinet", "http",
           "linux", "part_gpt", "fat", "iso9660", "all_video")


def render_grub(cfg: BootConfig) -> str:
    hubs = [h for h in cfg.boot_bases if h.startswith("http://")]
    if not hubs:
        raise BuildInputError("UEFI media need at least one plain http:// hub (GRUB has no TLS)")
    args = kernel_cmdline(cfg)
    lines = [
        f"# zosnode UEFI loader: farm {cfg.farm}, channel {cfg.channel}",
        "set timeout=0",
        "insmod efinet",
        "insmod http",
        f"echo 'zosnode: farm {cfg.farm} channel {cfg.channel}'",
        "while true; do",
        "  net_bootp",
    ]
    for hub in hubs:
        parts = urlsplit(hub)
        host = parts.netloc
        base = f"{parts.path.rstrip('/')}/{layout.BOOT}/{cfg.channel}"
        lines += [
            f"  echo 'zosnode: trying {hub}'",
            f"  if linux (http,{host}){base}/{layout.KERNEL} {args}; then",
            f"    if initrd (http,{host}){base}/{layout.INITRD}; then boot; fi",
            "  fi",
        ]
    lines += [
        f"  echo 'zosnode: no hub answered, retrying in {cfg.retry_delay_s} s'",
        f"  sleep {cfg.retry_delay_s}",
        "done",
    ]
    return "\n".join(lines) + "\n"
