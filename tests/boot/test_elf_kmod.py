"""ELF DT_NEEDED and kernel-module resolution, checked against readelf and depmod."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from zosnode.bootmedia import elf, kmod
from zosnode.bootmedia.errors import BuildInputError, FormatError

PYTHON = Path("/usr/bin/python3.11")


def _readelf_needed(path: Path) -> tuple[str, ...]:
    out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return tuple(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out))


@pytest.mark.skipif(shutil.which("readelf") is None or not PYTHON.exists(),
                    reason="needs readelf (binutils) and /usr/bin/python3.11")
def test_needed_matches_readelf() -> None:
    import _ssl

    for path in (PYTHON, Path(_ssl.__file__)):
        assert elf.needed(path.read_bytes()) == _readelf_needed(path)


def test_needed_refuses_garbage_and_truncation() -> None:
    with pytest.raises(FormatError):
        elf.needed(b"MZ not elf")
    data = PYTHON.read_bytes() if PYTHON.exists() else b""
    if not data:
        pytest.skip("needs /usr/bin/python3.11")
    for cut in (5, 40, 64, 200):
        with pytest.raises(FormatError):
            elf.needed(data[:cut])


def _mod(name: str, *deps: str) -> kmod.Module:
    return kmod.Module(name, f"kernel/{name}.ko", tuple(deps), ())


def test_resolve_orders_dependencies_first() -> None:
    avail = {m.name: m for m in (_mod("a", "b", "c"), _mod("b", "c"), _mod("c"), _mod("x"))}
    order = [m.name for m in kmod.resolve(["a", "af_packet"], avail, frozenset({"af_packet"}))]
    assert order == ["c", "b", "a"]
    dep = kmod.render_dep(kmod.resolve(["a"], avail, frozenset()))
    assert "kernel/a.ko: kernel/b.ko kernel/c.ko\n" in dep


def test_resolve_refuses_unknown_and_cycles() -> None:
    avail = {m.name: m for m in (_mod("a", "missing"), _mod("p", "q"), _mod("q", "p"))}
    with pytest.raises(BuildInputError, match="missing.*needed by a"):
        kmod.resolve(["a"], avail, frozenset())
    with pytest.raises(BuildInputError, match="nosuch"):
        kmod.resolve(["nosuch"], avail, frozenset())
    with pytest.raises(FormatError, match="cycle"):
        kmod.resolve(["p"], avail, frozenset())


def test_load_list_names_the_pci_devices_a_module_serves() -> None:
    nic = kmod.Module("nic", "kernel/nic.ko", ("core",), ())
    core = kmod.Module("core", "kernel/core.ko", ("lib",), ("pci:v00001111d*sv*sd*bc*sc*i*",))
    other = kmod.Module("other", "kernel/other.ko", ("lib",), ("pci:v00002222d0001*",))
    virt = kmod.Module("virt", "kernel/virt.ko", ("lib",), ("virtio:d00000001v*",))
    fs = kmod.Module("fs", "kernel/fs.ko", (), ("fs-fs",))
    avail = {m.name: m for m in (nic, core, other, virt, fs, _mod("lib"))}
    wanted = ["nic", "other", "af_packet", "fs", "nic"]
    listing = kmod.render_load_list(kmod.resolve(wanted, avail, frozenset({"af_packet"})), wanted)
    assert listing == ("kernel/lib.ko pci:v00001111d*sv*sd*bc*sc*i* pci:v00002222d0001*\n"
                       "kernel/core.ko pci:v00001111d*sv*sd*bc*sc*i*\n"
                       "kernel/nic.ko pci:v00001111d*sv*sd*bc*sc*i*\n"  # through its dependency
                       "kernel/other.ko pci:v00002222d0001*\n"
                       "kernel/fs.ko\n")
    # A dependency that a module serving no device PID 1 can tell is absent needs always loads.
    wanted = ["nic", "fs2"]
    fs2 = kmod.Module("fs2", "kernel/fs2.ko", ("lib",), ("fs-fs2",))
    avail["fs2"] = fs2
    listing = kmod.render_load_list(kmod.resolve(wanted, avail, frozenset()), wanted)
    assert "kernel/lib.ko\n" in listing and "kernel/fs2.ko\n" in listing
    assert "kernel/core.ko pci:" in listing


def test_load_list_gates_virtio_xen_scsi_and_efi_modules() -> None:
    """A virtio driver after the transport names its virtio device; before it, it always loads
    (no virtio device is seen yet); Xen and SCSI modules name their bus, efivarfs the EFI
    firmware, which PID 1 finds present or not."""
    ring = _mod("ring")
    pci = kmod.Module("virtio_pci", "kernel/virtio_pci.ko", ("ring",), ("pci:v00001AF4d*",))
    blk = kmod.Module("virtio_blk", "kernel/virtio_blk.ko", ("ring",), ("virtio:d00000002v*",))
    scsi = kmod.Module("scsi_mod", "kernel/scsi_mod.ko", (), ())
    vscsi = kmod.Module("virtio_scsi", "kernel/virtio_scsi.ko", ("scsi_mod", "ring"),
                        ("virtio:d00000008v*",))
    sd = kmod.Module("sd_mod", "kernel/sd_mod.ko", ("scsi_mod",), ("scsi:t-0x00*",))
    xen = kmod.Module("xen_netfront", "kernel/xen-netfront.ko", (), ("xen:vif",))
    efi = kmod.Module("efivarfs", "kernel/efivarfs.ko", (), ("fs-efivarfs",))
    avail = {m.name: m for m in (ring, pci, blk, scsi, vscsi, sd, xen, efi)}
    wanted = ["virtio_pci", "virtio_blk", "virtio_scsi", "sd_mod", "xen_netfront", "efivarfs"]
    listing = kmod.render_load_list(kmod.resolve(wanted, avail, frozenset()), wanted)
    assert listing == ("kernel/ring.ko\n"  # virtio_blk's too, before the transport
                       "kernel/virtio_pci.ko pci:v00001AF4d*\n"
                       "kernel/virtio_blk.ko virtio:d00000002v*\n"
                       "kernel/scsi_mod.ko /sys/bus/scsi virtio:d00000008v*\n"
                       "kernel/virtio_scsi.ko virtio:d00000008v*\n"
                       "kernel/sd_mod.ko /sys/bus/scsi\n"
                       "kernel/xen-netfront.ko /sys/hypervisor/type\n"
                       "kernel/efivarfs.ko /sys/firmware/efi\n")
    # A virtio driver listed before the transport always loads.
    wanted = ["virtio_blk", "virtio_pci"]
    listing = kmod.render_load_list(kmod.resolve(wanted, avail, frozenset()), wanted)
    assert "kernel/virtio_blk.ko\n" in listing


def test_module_names_and_list() -> None:
    assert kmod.module_name("kernel/drivers/net/xen-netfront.ko") == "xen_netfront"
    assert kmod.parse_list("# c\nvirtio-net  # nic\n\nfuse\n") == ("virtio_net", "fuse")


def _host_modules() -> Path:
    # Any installed kernel whose modules.dep depmod wrote serves as the peer.
    found = sorted(Path("/lib/modules").glob("*/modules.dep"))
    if not found:
        pytest.skip("needs an installed kernel with modules.dep (linux-image-cloud-amd64)")
    return found[-1].parent


def test_render_dep_agrees_with_depmod() -> None:
    moddir = _host_modules()
    depmod: dict[str, set[str]] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        path, _, deps = line.partition(":")
        depmod[path] = set(deps.split())
    wanted = ("virtio_net", "nft_ct", "nft_reject_inet", "fuse", "tun")
    avail: dict[str, kmod.Module] = {}
    for path in depmod:
        if path.endswith(".ko"):
            m = kmod.read_module(path, (moddir / path).read_bytes())
            avail[m.name] = m
    chosen = kmod.resolve(wanted, avail, frozenset())
    ours = {}
    for line in kmod.render_dep(chosen).splitlines():
        path, _, deps = line.partition(":")
        ours[path] = set(deps.split())
    assert ours == {p: depmod[p] for p in ours}
    assert {kmod.module_name(p) for p in ours} >= {"virtio_net", "nf_tables", "fuse"}
