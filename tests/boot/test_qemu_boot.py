"""The initramfs boots in QEMU: directly, by a full iPXE netboot, and from the ISO.

Up to the point where the artifact runs as /init (here `zosnode version`,
then PID 1 exits and the kernel stops QEMU); `test_node_ready.py` goes on
to `zosnode: ready`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.boot.conftest import TOP, BootFiles
from tests.lab import qemu
from tests.lab.dnsmasq import bridge_with_tap, dnsmasq, http_server
from tests.lab.netns import netns

pytestmark = pytest.mark.slow
VERSION_LINE = r"zosnode \d+\.\d+\.\d+ \([0-9a-f]{16}\)"
BOOT_S = 120  # software emulation on 2 shared cores: typical 6-20 s


def zosnode(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zosnode", *argv], capture_output=True,
                          text=True, timeout=300, cwd=TOP)


def test_artifact_runs_as_init_and_every_module_imports(boot_files: BootFiles,
                                                       tmp_path: Path) -> None:
    """Direct kernel boot: the artifact runs as /init, and the trimmed standard
    library and collected libraries are enough for every vendored module the
    node profile holds (natives unpacked under /run, pure packages from the zip)."""
    argv = qemu.base_argv(tmp_path / "console.log") + qemu.direct_boot_argv(
        boot_files.kernel, boot_files.initramfs,
        "console=ttyS0 panic=-1 quiet -- audit --check-imports")
    with qemu.vm(argv, tmp_path / "console.log") as vm:
        vm.wait_for(r"artifact +/init\s", BOOT_S)
        vm.wait_for(r"import xxhash .*\n", BOOT_S)
        vm.wait_exit(30)
        text = vm.text()
    imports = [ln for ln in text.splitlines() if ln.startswith("import ")]
    assert len(imports) >= 8, text
    # /init is the node profile (bootmedia/profile.py): no node path loads the
    # builder's chunker, nor pycparser (only
    # cffi's compiler uses it, and only trio's fallback for an os without waitid
    # imports that; cffi's backend, which PyNaCl needs, imports), nor
    # typing_extensions (imported only under TYPE_CHECKING, a `try` whose
    # `typing` import succeeds, or trio's sphinx branch: profile._FOLLOW).
    failed = [ln.split()[1] for ln in imports if "FAILED" in ln]
    assert failed == ["pycparser", "pyfastcdc", "typing-extensions"], \
        "\n".join(imports)
    assert "/run/zosnode/" in text  # natives were unpacked into the rootfs' /run


def _boot_server(ns: str, tmp: Path, boot_files: BootFiles, hubs: list[str],
                 init_arg: str = "version") -> Path:
    """dnsmasq config + TFTP root from the CLI, kernel and initramfs under www/boot/<ch>/."""
    out = tmp / "bootserver"
    hub_args = [a for h in hubs for a in ("--hub", h)]
    proc = zosnode("bootstrap", "dnsmasq", "--farm", "lab", "--channel", "test", *hub_args,
                   "--timeout-ms", "5000", "--init-arg", init_arg,
                   "--kernel-arg", "quiet", "-o", str(out), "--interface", "zb0",
                   "--network", "10.99.0.0/24", "--range", "10.99.0.50,10.99.0.99")
    assert proc.returncode == 0, proc.stderr
    www = tmp / "www" / "boot" / "test"
    www.mkdir(parents=True)
    (www / "vmlinuz").symlink_to(boot_files.kernel)
    (www / "initramfs.img").symlink_to(boot_files.initramfs)
    return out


@pytest.mark.usefixtures("root_lab")
def test_ipxe_netboot_retries_and_falls_back(boot_files: BootFiles, tmp_path: Path) -> None:
    """Firmware iPXE -> dnsmasq DHCP/RA/TFTP -> our script. No hub answers at
    first: the script waits and starts over. Then the second hub comes up: the
    first still refuses, the second serves kernel and initramfs -> /init runs."""
    with netns("zb") as ns:
        bridge_with_tap(ns, "zb0", "zt0", "10.99.0.1/24", "fd99::1/64")
        dead, live = "http://10.99.0.1:8001", "http://10.99.0.1:8000"
        server = _boot_server(ns, tmp_path, boot_files, [dead, live])
        with dnsmasq(ns, server / "dnsmasq.conf", tmp_path / "dnsmasq.log"):
            console = tmp_path / "console.log"
            argv = qemu.base_argv(console) + qemu.tap_nic_argv("zt0") + ["-boot", "n"]
            with qemu.vm(qemu.nsexec_argv(ns, argv), console) as vm:
                vm.wait_for(r"zosnode: farm lab channel test", BOOT_S)
                waiting, _ = vm.wait_for(r"zosnode: no hub answered, retrying in 5 s", BOOT_S)
                with http_server(ns, "10.99.0.1", 8000, tmp_path / "www",
                                 tmp_path / "http.log"):
                    again, _ = vm.wait_for(r"zosnode: trying http://10\.99\.0\.1:8001",
                                           60, start=waiting.end())
                    vm.wait_for(r"zosnode: trying http://10\.99\.0\.1:8000", BOOT_S,
                                start=again.end())
                    vm.wait_for(VERSION_LINE, BOOT_S)
                    text = vm.text()
        http_log = (tmp_path / "http.log").read_text()
        dns_log = (tmp_path / "dnsmasq.log").read_text()
    first = text[:text.index("no hub answered")]
    assert first.index("trying http://10.99.0.1:8001") < first.index("trying http://10.99.0.1:8000")
    assert "GET /boot/test/vmlinuz" in http_log and "GET /boot/test/initramfs.img" in http_log
    assert "boot.ipxe" in dns_log and "DHCPACK" in dns_log


OVMF = Path("/usr/share/ovmf/OVMF.fd")
MEDIA = {  # medium -> (bootstrap command, extra args, QEMU args given the image, UEFI?)
    "iso-bios": ("iso", ["--no-efi"], lambda img: ["-cdrom", img, "-boot", "d"], False),
    "iso-uefi": ("iso", [], lambda img: ["-cdrom", img, "-boot", "d"], True),
    "usb-bios": ("usb", [], lambda img: ["-drive", f"file={img},format=raw,if=ide",
                                         "-boot", "c"], False),
    "efi-uefi": ("efi", [], lambda img: ["-drive", f"file={img},format=raw,if=ide"], True),
}


@pytest.mark.usefixtures("root_lab")
@pytest.mark.parametrize("medium", sorted(MEDIA))
def test_boot_media(boot_files: BootFiles, tmp_path: Path, medium: str) -> None:
    """BIOS: SeaBIOS -> El Torito or the hybrid MBR -> isolinux -> iPXE with the farm's
    script. UEFI: OVMF -> GRUB (El Torito EFI image, or the EFI partition image as a
    disk) -> DHCP and HTTP -> EFI stub. Then the artifact runs as /init."""
    command, extra, qemu_args, uefi = MEDIA[medium]
    if uefi and not OVMF.exists():
        pytest.skip(f"needs {OVMF} (Debian package ovmf) for the UEFI boot")
    image = tmp_path / f"{medium}.img"
    with netns("zi") as ns:
        bridge_with_tap(ns, "zb0", "zt0", "10.99.0.1/24", "fd99::1/64")
        server = _boot_server(ns, tmp_path, boot_files, ["http://10.99.0.1:8000"])
        proc = zosnode("bootstrap", command, *extra, "--farm", "lab", "--channel", "test",
                       "--hub", "http://10.99.0.1:8000", "--init-arg", "version",
                       "--kernel-arg", "quiet", "-o", str(image))
        assert proc.returncode == 0, proc.stderr
        with dnsmasq(ns, server / "dnsmasq.conf", tmp_path / "dnsmasq.log"), \
                http_server(ns, "10.99.0.1", 8000, tmp_path / "www", tmp_path / "http.log"):
            console = tmp_path / "console.log"
            argv = (qemu.base_argv(console) + qemu.tap_nic_argv("zt0") + qemu_args(str(image))
                    + (["-bios", str(OVMF)] if uefi else []))
            with qemu.vm(qemu.nsexec_argv(ns, argv), console) as vm:
                vm.wait_for(r"zosnode: farm lab channel test", BOOT_S)
                vm.wait_for(VERSION_LINE, BOOT_S)
