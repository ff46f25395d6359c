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


def _uki_option(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("--uki", type=Path, metavar="FILE", help=help_text)


def _signing(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--key", type=Path, required=required,
                   help="the db (boot-signing) private key, PEM")
    p.add_argument("--cert", type=Path, required=required,
                   help="its certificate, PEM (enrolled in the firmware's db)")


def register(sub: Any) -> None:
    _, commands = add_group(sub, "bootstrap", "render per-farm boot media")
    p = add_command(commands, "ipxe", "write the farm's iPXE script", _ipxe)
    _common(p, output=False)
    p.add_argument("-o", "--output", type=Path, help="file to write (default stdout)")
    p.add_argument("--uki", action="store_true",
                   help="EFI iPXE chains the signed UKI boot/<channel>/zosnode.efi with "
                        "zosnode.cred from beside the script (Secure Boot)")
    on_medium = "the signed UKI to boot on UEFI instead of GRUB (Secure Boot)"
    p = add_command(commands, "iso", "build a hybrid BIOS/UEFI ISO (also boots from USB)", _iso)
    _common(p)
    p.add_argument("--no-efi", action="store_true", help="BIOS only (smaller)")
    _uki_option(p, on_medium)
    p = add_command(commands, "usb", "build a raw USB image (the hybrid ISO's bytes)", _iso)
    _common(p)
    _uki_option(p, on_medium)
    p.set_defaults(no_efi=False)
    p = add_command(commands, "efi", "build a FAT EFI system partition image", _efi)
    _common(p)
    _uki_option(p, on_medium)
    p = add_command(commands, "settings",
                    "write the farm's settings file for a signed UKI (zosnode.cred)", _settings)
    _common(p)
    p = add_command(commands, "uki", "build a unified kernel image and sign it", _uki)
    p.add_argument("--kernel", type=Path, required=True, help="vmlinuz (initramfs build output)")
    p.add_argument("--initramfs", type=Path, required=True, help="initramfs.img")
    p.add_argument("--kernel-arg", action="append", default=[], metavar="ARG",
                   help="extra kernel argument, signed into every farm's image (repeatable)")
    p.add_argument("--init-arg", action="append", default=None, metavar="ARG",
                   help="argv for /init after `--` (default: node run)")
    p.add_argument("--uname", default="", help="kernel release for the .uname section")
    _signing(p, required=False)
    p.add_argument("--unsigned", action="store_true", help="write the image unsigned")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="where to write it (publish as DATA/boot/<channel>/zosnode.efi)")
    p = add_command(commands, "sign", "sign an EFI binary (e.g. ipxe.efi) with the db key",
                    _sign)
    p.add_argument("image", type=Path)
    _signing(p)
    p.add_argument("-o", "--output", type=Path, required=True)
    p = add_command(commands, "secureboot-keys",
                    "make a PK/KEK/db key set; optionally an OVMF variable store with it",
                    _secureboot_keys)
    p.add_argument("--out", type=Path, required=True, help="directory for the keys (new)")
    p.add_argument("--name", default="zosnode farm", help="certificates' common name prefix")
    p.add_argument("--existing", action="store_true",
                   help="use the PK/KEK/db certificates already in --out (the operator's own)")
    p.add_argument("--ovmf-vars", type=Path, metavar="FILE",
                   help="also write an OVMF variable store with the keys enrolled (lab)")
    p.add_argument("--ovmf-template", type=Path,
                   default=Path("/usr/share/OVMF/OVMF_VARS_4M.fd"),
                   help="the empty store to start from (default: Debian's 4M one)")
    p.add_argument("--secure-boot-off", action="store_true",
                   help="enrol the keys but leave Secure Boot off")
    p = add_command(commands, "dnsmasq",
                    "write a dnsmasq config and TFTP root for a lab boot server", _dnsmasq)
    _common(p, output=False)
    p.add_argument("-o", "--output", type=Path, required=True, help="directory to fill")
    p.add_argument("--interface", required=True, help="interface dnsmasq serves")
    p.add_argument("--network", required=True, help="IPv4 network, e.g. 10.99.0.0/24")
    p.add_argument("--range", help="first,last address to lease; omit for proxy-DHCP")
    p.add_argument("--no-ra", action="store_true", help="do not send IPv6 router advertisements")
    p.add_argument("--uki", action="store_true",
                   help="the script chains the signed UKI on EFI; zosnode.cred goes in the "
                        "TFTP root")
    p.add_argument("--efi-loader", type=Path, metavar="FILE",
                   help="the ipxe.efi to serve (a copy signed with the db key for Secure Boot; "
                        "default Debian's, unsigned)")


def _config(args: argparse.Namespace) -> Any:
    from zosnode.bootmedia.ipxe import BootConfig, parse_hubs

    cfg = BootConfig(farm=args.farm, channel=args.channel, hubs=parse_hubs(args.hub),
                     extra_args=tuple(args.kernel_arg), timeout_ms=args.timeout_ms,
                     boot_urls=parse_hubs(args.boot_url), uki=getattr(args, "uki", False) is True)
    if args.init_arg is not None:
        cfg = dataclasses.replace(cfg, init_args=tuple(args.init_arg))
    return cfg


def _uki_medium(args: argparse.Namespace) -> Path | None:
    """The --uki image of a medium; the command line is signed into it, not on the medium."""
    uki: Path | None = args.uki
    if uki is not None and (args.kernel_arg or args.init_arg is not None):
        raise UserError("--kernel-arg and --init-arg are signed into the UKI "
                        "(zosnode bootstrap uki), not set on the medium")
    return uki


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

    if args.uki is not None and args.no_efi:
        raise UserError("--uki is the UEFI path: not with --no-efi")
    build_iso(_config(args), args.output, efi=not args.no_efi, uki=_uki_medium(args))
    print(f"{args.output}  {args.output.stat().st_size} bytes")
    return 0


def _efi(args: argparse.Namespace) -> int:
    from zosnode.bootmedia.media import build_efi_image

    build_efi_image(_config(args), args.output, uki=_uki_medium(args))
    print(f"{args.output}  {args.output.stat().st_size} bytes")
    return 0


def _dnsmasq(args: argparse.Namespace) -> int:
    from zosnode.atomicfile import write_atomic
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
    boot = _config(args)
    _write_text(tftp / dnsmasq.SCRIPT_NAME, render_ipxe(boot))
    if boot.uki:
        from zosnode.bootmedia.ipxe import SETTINGS_NAME, render_settings

        _write_text(tftp / SETTINGS_NAME, render_settings(boot))
    for name in (dnsmasq.BIOS_LOADER, dnsmasq.EFI_LOADER):
        src = Path("/usr/lib/ipxe") / name
        if name == dnsmasq.EFI_LOADER and args.efi_loader is not None:
            src = args.efi_loader
        if not src.exists():
            raise UserError(f"{src} is missing: install the Debian package ipxe")
        write_atomic(tftp / name, src.read_bytes())  # tftp/ exists: the script is in it
    _write_text(args.output / "dnsmasq.conf", conf)
    print(f"{args.output / 'dnsmasq.conf'}: run dnsmasq --no-daemon --conf-file=THAT")
    return 0


def _settings(args: argparse.Namespace) -> int:
    from zosnode.bootmedia.ipxe import render_settings

    _write_text(args.output, render_settings(_config(args)))
    return 0


def _uki(args: argparse.Namespace) -> int:
    import tempfile

    from zosnode.bootmedia import uki

    if args.unsigned == (args.key is not None or args.cert is not None):
        raise UserError("give --key and --cert to sign, or --unsigned")
    if not args.unsigned and (args.key is None or args.cert is None):
        raise UserError("give both --key and --cert")
    cfg = uki.UkiConfig(extra_args=tuple(args.kernel_arg), uname=args.uname,
                        **({} if args.init_arg is None else {"init_args": tuple(args.init_arg)}))
    if args.unsigned:
        uki.build_uki(args.kernel, args.initramfs, args.output, cfg)
    else:
        with tempfile.TemporaryDirectory(prefix="zosnode-uki-") as tmp:
            unsigned = Path(tmp) / "unsigned.efi"
            uki.build_uki(args.kernel, args.initramfs, unsigned, cfg)
            uki.sign(unsigned, args.output, args.key, args.cert)
    print(f"{args.output}  {args.output.stat().st_size} bytes"
          f"{'  unsigned' if args.unsigned else ''}")
    return 0


def _sign(args: argparse.Namespace) -> int:
    from zosnode.bootmedia import uki

    uki.sign(args.image, args.output, args.key, args.cert)
    print(f"{args.output}  signed")
    return 0


def _secureboot_keys(args: argparse.Namespace) -> int:
    from zosnode.bootmedia import secureboot

    if args.existing:
        keys = secureboot.KeySet(args.out)
        keys.check_certs()
    else:
        keys = secureboot.make_keys(args.out, args.name)
        print(f"{args.out}: PK, KEK, db (.key private, .crt PEM, .cer DER, .auth signed updates)")
    if args.ovmf_vars is not None:
        secureboot.enrol_ovmf(keys, args.ovmf_template, args.ovmf_vars,
                              secure_boot=not args.secure_boot_off)
        print(f"{args.ovmf_vars}: OVMF variables with the keys enrolled, Secure Boot "
              f"{'off' if args.secure_boot_off else 'on'}")
    return 0
