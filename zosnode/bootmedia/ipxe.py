"""The per-farm iPXE script and the node's kernel command line. Pure code.

The script brings up the network (DHCP on any NIC), then tries each hub in
order for the kernel and the initramfs, with a progress timeout on every
download; when every hub has failed it waits and starts again, forever. The
hubs and the channel reach the node on the kernel command line; whom the
node trusts is compiled into the initramfs and cannot be changed here.

Served paths: `<base>/boot/<channel>/vmlinuz` and `<base>/boot/<channel>/initramfs.img`,
where the bases are the hubs unless separate boot URLs are given (any static
server or CDN can hold the two files). The command line uses the agent's keys
(zosnode.agent.cmdline): `zos.farm=`, `zos.channel=`, one `zos.hub=` per hub.

With `uki` (UEFI Secure Boot) an EFI iPXE chains the signed unified kernel
image `<base>/boot/<channel>/zosnode.efi` instead, through the firmware's
image loader, which checks its signature. The stub inside it ignores the
command line under Secure Boot, so the farm's settings travel as a second
file, `zosnode.cred` (`render_settings`), fetched from beside the script
(the TFTP root or the hub's bootstrap route) and handed to the stub, which
packs it into the initramfs (zosnode.agent.settings). A BIOS iPXE still loads
kernel and initramfs, unverified.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from zosnode.bootmedia.errors import BuildInputError
from zosnode.hub import paths as layout

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_URL = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/%-]*)?")
_ARG = re.compile(r"[A-Za-z0-9._,:=/@+-]+")
KERNEL_NAME = layout.KERNEL
NATIVE_DIR = "/lib/zosnode"  # created by the initramfs builder
INITRD_NAME = layout.INITRD
UKI_NAME = layout.UKI
SETTINGS_NAME = "zosnode.cred"  # the stub packs *.cred into /.extra/credentials/
# iPXE's EFI file system shows the downloaded images in one flat root, and
# opens that root for any name that starts with "."; the stub looks for
# `<image name>.extra.d`, so a leading dot makes it find the settings file.
UKI_IMAGE_NAME = "." + UKI_NAME


@dataclass(frozen=True)
class BootConfig:
    """Everything that makes one farm's boot media differ from another's."""

    farm: str
    channel: str
    hubs: tuple[str, ...]
    console: tuple[str, ...] = ("tty0", "ttyS0,115200")
    extra_args: tuple[str, ...] = ()  # more kernel arguments, e.g. "quiet"
    init_args: tuple[str, ...] = ("node", "run")  # passed to /init after "--"
    timeout_ms: int = 30_000  # per-download progress timeout
    retry_delay_s: int = 5
    boot_urls: tuple[str, ...] = ()  # where vmlinuz/initramfs.img live; () = the hubs
    # NAME=value words without a dot reach /init as environment variables. The
    # artifact unpacks its native modules before PID 1 mounts a tmpfs on /run,
    # which would hide them: keep them in the rootfs instead.
    init_env: tuple[str, ...] = (f"ZOSNODE_RUNTIME_DIR={NATIVE_DIR}",)
    uki: bool = False  # EFI iPXE chains the signed UKI (Secure Boot) instead of kernel+initrd

    def __post_init__(self) -> None:
        for what, value in (("farm", self.farm), ("channel", self.channel)):
            if not _NAME.fullmatch(value):
                raise BuildInputError(
                    f"{what} {value!r}: use 1-64 letters, digits, '.', '_' or '-'")
        if not self.hubs:
            raise BuildInputError("give at least one hub URL")
        for hub in (*self.hubs, *self.boot_urls):
            if not _URL.fullmatch(hub) or "," in hub:
                raise BuildInputError(
                    f"hub {hub!r} is not a plain http(s)://host[:port][/path] URL")
        for env in self.init_env:
            if not re.fullmatch(r"[A-Z][A-Z0-9_]*=[^ ]*", env):
                raise BuildInputError(f"init environment {env!r} is not NAME=value")
        for arg in (*self.console, *self.extra_args, *self.init_args, *self.init_env):
            if not _ARG.fullmatch(arg):
                raise BuildInputError(f"kernel argument {arg!r} has characters iPXE would expand")
        if not 1_000 <= self.timeout_ms <= 600_000:
            raise BuildInputError("timeout_ms must be between 1000 and 600000")
        if not 1 <= self.retry_delay_s <= 3600:
            raise BuildInputError("retry_delay_s must be between 1 and 3600")

    @property
    def hub_bases(self) -> tuple[str, ...]:
        return tuple(h.rstrip("/") for h in self.hubs)

    @property
    def boot_bases(self) -> tuple[str, ...]:
        return tuple(h.rstrip("/") for h in self.boot_urls) or self.hub_bases


def kernel_cmdline(cfg: BootConfig) -> str:
    """The node's command line: console, farm, channel, hubs, then /init's argv."""
    parts = [f"console={c}" for c in cfg.console]
    parts += [f"zos.farm={cfg.farm}", f"zos.channel={cfg.channel}",
              *(f"zos.hub={h}" for h in cfg.hub_bases), "panic=10", *cfg.init_env,
              *cfg.extra_args]
    if cfg.init_args:
        parts += ["--", *cfg.init_args]
    return " ".join(parts)


def render_settings(cfg: BootConfig) -> str:
    """The per-farm settings beside a signed UKI: the `zos.*` words of the command line."""
    words = [f"zos.farm={cfg.farm}", f"zos.channel={cfg.channel}",
             *(f"zos.hub={h}" for h in cfg.hub_bases)]
    return " ".join(words) + "\n"


def boot_urls(cfg: BootConfig, hub: str) -> tuple[str, str]:
    base = f"{hub.rstrip('/')}/{layout.BOOT}/{cfg.channel}"
    return f"{base}/{KERNEL_NAME}", f"{base}/{INITRD_NAME}"


def render_ipxe(cfg: BootConfig) -> str:
    """The iPXE script for one farm and channel."""
    # initrd= names the image for the EFI stub; harmless under BIOS.
    args = kernel_cmdline(cfg).replace(" -- ", f" initrd={INITRD_NAME} -- ", 1) \
        if cfg.init_args else f"{kernel_cmdline(cfg)} initrd={INITRD_NAME}"
    lines = [
        "#!ipxe",
        f"# zosnode boot loader: farm {cfg.farm}, channel {cfg.channel}",
        "# Generated; the hubs are tried in order, forever.",
        ":start",
        "echo zosnode: farm " + cfg.farm + " channel " + cfg.channel,
        "isset ${ip} || dhcp || goto wait",
    ]
    if cfg.uki:
        lines.append("iseq ${platform} efi && goto uki0 || goto hub0")
    for i, hub in enumerate(cfg.boot_bases):
        kernel, initrd = boot_urls(cfg, hub)
        nxt = f"hub{i + 1}" if i + 1 < len(cfg.boot_bases) else "wait"
        lines += [
            f":hub{i}",
            f"echo zosnode: trying {hub}",
            "imgfree",
            f"kernel --name {KERNEL_NAME} --timeout {cfg.timeout_ms} {kernel} {args}"
            f" || goto {nxt}",
            f"initrd --name {INITRD_NAME} --timeout {cfg.timeout_ms} {initrd} || goto {nxt}",
            f"boot || goto {nxt}",
        ]
    if cfg.uki:
        lines += _uki_lines(cfg, kernel_cmdline(cfg))
    lines += [
        ":wait",
        f"echo zosnode: no hub answered, retrying in {cfg.retry_delay_s} s",
        # Not every iPXE build has `sleep`; `prompt --timeout` waits the same.
        f"sleep {cfg.retry_delay_s} || prompt --timeout {cfg.retry_delay_s * 1000} "
        "zosnode: waiting || goto start",
        "goto start",
    ]
    return "\n".join(lines) + "\n"


def _uki_lines(cfg: BootConfig, args: str) -> list[str]:
    # The settings come from beside the script (a relative URL); the image from
    # each boot base in turn. `chain` hands both to the firmware's loader: under
    # Secure Boot an image not signed by db is refused there ("Access Denied").
    # The arguments matter only with Secure Boot off (the stub then takes them).
    lines = []
    for i, hub in enumerate(cfg.boot_bases):
        url = f"{hub}/{layout.BOOT}/{cfg.channel}/{UKI_NAME}"
        nxt = f"uki{i + 1}" if i + 1 < len(cfg.boot_bases) else "wait"
        lines += [
            f":uki{i}",
            f"echo zosnode: trying {hub} (signed image)",
            "imgfree",
            f"imgfetch --name {SETTINGS_NAME} --timeout {cfg.timeout_ms} {SETTINGS_NAME}"
            " || goto wait",
            f"chain --name {UKI_IMAGE_NAME} --timeout {cfg.timeout_ms} {url} {args}"
            f" || goto {nxt}",
        ]
    return lines


def parse_hubs(values: Sequence[str]) -> tuple[str, ...]:
    """Hubs from repeated options or comma-separated lists."""
    return tuple(h for v in values for h in v.split(",") if h)
