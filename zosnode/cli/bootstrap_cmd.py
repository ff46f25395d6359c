"""`zosnode bootstrap`: render per-farm boot media and a lab boot server config."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from zosnode.cli.group import add_command, add_group
from zosnode.errors import UserError


def _common(p: argparse.ArgumentParser, output: bool = True) -> None:
    p.add_argument("--farm", required=True, help="farm id the node boots for")
    p.add_argument("--channel", default="stable", help="release channel (default stable)")
    p.add_argument("--hub", action="append", required=True, metavar="URL",
                   help="hub or mirror base URL; repeat (or comma-separate) for fallbacks")
    p.add_argument("--boot-url", action="append", default=[], metavar="URL",
                   help="where <URL>/boot/<channel>/{vmlinuz,initramfs.img} are served, if not "
                        "from the hubs; repeat for fallbacks")
    p.add_argument("--kernel-arg", action="append", default=[], metavar="ARG",
                   help="extra kernel command line argument (repeatable)")
    p.add_argument("--timeout-ms", type=int, default=30_000,
                   help="per-download progress timeout (default 30000)")
    p.add_argument("--init-arg", action="append", default=None, metavar="ARG",
                   help="argv for /init after the kernel's `--` (default: node run; "
                        "lab use, e.g. `--init-arg version`)")
    if output:
        p.add_argument("-o", "--output", type=Path, required=True)


def register(sub: Any) -> None:
    _, commands = add_group(sub, "bootstrap", "render per-farm boot media")
    p = add_command(commands, "ipxe", "write the farm's iPXE script", _ipxe)
    _common(p, output=False)
    p.add_argument("-o", "--output", type=Path, help="file to write (default stdout)")
    p = add_command(commands, "iso", "build a hybrid BIOS/UEFI ISO (also boots from USB)", _iso)
    _common(p)
    p.add_argument("--no-efi", action="store_true", help="BIOS only (smaller)")
    p = add_command(commands, "usb", "build a raw USB image (the hybrid ISO's bytes)", _iso)
    _common(p)
    p.set_defaults(no_efi=False)
    p = add_command(commands, "efi", "build a FAT EFI system partition image", _efi)
    _common(p)
    p = add_command(commands, "dnsmasq",
                    "write a dnsmasq config and TFTP root for a lab boot server", _dnsmasq)
    _common(p, output=False)
    p.add_argument("-o", "--output", type=Path, required=True, help="directory to fill")
    p.add_argument("--interface", required=True, help="interface dnsmasq serves")
    p.add_argument("--network", required=True, help="IPv4 network, e.g. 10.99.0.0/24")
    p.add_argument("--range", help="first,last address to lease; omit for proxy-DHCP")
    p.add_argument("--no-ra", action="store_true", help="do not send IPv6 router advertisements")


def _config(args: argparse.Namespace) -> Any:
    from zosnode.bootmedia.ipxe import BootConfig, parse_hubs

    cfg = BootConfig(farm=args.farm, channel=args.channel, hubs=parse_hubs(args.hub),
                     extra_args=tuple(args.kernel_arg), timeout_ms=args.timeout_ms,
                     boot_urls=parse_hubs(args.boot_url))
    if args.init_arg is not None:
        cfg = dataclasses.replace(cfg, init_args=tuple(args.init_arg))
    return cfg


def _write_text(path: Path, text: str) -> None:
    from zosnode.atomicfile import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text.encode())


def _ipxe(args: argparse.Namespace) -> int:
    from zosnode.bootmedia.ipxe import render_ipxe

    script = render_ipxe(_config(args))
    if args.output is None:
        sys.stdout.write(script)
    else:
        _write_text(args.output, script)
    return 0


def _iso(args: argparse.Namespace) -> int:
    from zosnode.bootmedia.media import build_iso

    build_iso(_config(args), args.output, efi=not args.no_efi)
    print(f"{args.output}  {args.output.stat().st_size} bytes")
    return 0


def _efi(args: argparse.Namespace) -> int:
    from zosnode.bootmedia.media import build_efi_image

    build_efi_image(_config(args), args.output)
    print(f"{args.output}  {args.output.stat().st_size} bytes")
    return 0


def _dnsmasq(args: argparse.Namespace) -> int:
    from zosnode.atomicfile import copy_atomic
    from zosnode.bootmedia import dnsmasq
    from zosnode.bootmedia.ipxe import render_ipxe

    first = last = None
    if args.range:
        first, _, last = args.range.partition(",")
        if not last:
            raise UserError("--range: give first,last")
    tftp = args.output / "tftp"
    cfg = dnsmasq.DhcpConfig(interface=args.interface, tftp_root=str(tftp.resolve()),
                             network=args.network, range_start=first, range_end=last,
                             router_advertisements=not args.no_ra)
    conf = dnsmasq.render_dnsmasq(cfg)
    _write_text(tftp / dnsmasq.SCRIPT_NAME, render_ipxe(_config(args)))
    for name in (dnsmasq.BIOS_LOADER, dnsmasq.EFI_LOADER):
        src = Path("/usr/lib/ipxe") / name
        if not src.exists():
            raise UserError(f"{src} is missing: install the Debian package ipxe")
        copy_atomic(src, tftp / name)  # tftp/ exists: the script is in it
    _write_text(args.output / "dnsmasq.conf", conf)
    print(f"{args.output / 'dnsmasq.conf'}: run dnsmasq --no-daemon --conf-file=THAT")
    return 0
