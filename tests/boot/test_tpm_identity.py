"""A VM with a TPM (swtpm) keeps its node id across reboots, with the seed on no disk.

Direct kernel boot of the test initramfs, `node run` against the real hub in
a lab namespace, a TPM 2.0 on QEMU's TIS interface backed by swtpm, and a
blank virtio disk. Two boots with the same TPM state give the same node id
and the hub lists one node; a factory-fresh TPM state gives another id.
After the VMs stop, the test derives the seed itself from the first TPM
state with our codec (it matches the node id) and looks for its bytes on the
disk and in the consoles.
"""

from __future__ import annotations

import time
from pathlib import Path

import nacl.signing
import pytest

from examples import demo_os
from tests.boot.conftest import BootFiles
from tests.lab import qemu
from tests.lab.bootlab import HUB, TAP, BootLab, boot_lab
from tests.tpm import swtpm
from zosnode.agent.identity import TPM_LABEL
from zosnode.bootmedia.ipxe import BootConfig, kernel_cmdline
from zosnode.tpm import device

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("root_lab"),
              pytest.mark.skipif(swtpm.missing() is not None, reason=str(swtpm.missing()))]
READY = r"zosnode: ready (\d+) ([0-9a-f]{64})"
IDENTITY = r"node id ([0-9a-f]{64}) \(identity from ([^)\n]*)\)"
BOOT_S = 180  # QEMU start to ready, software emulation on shared cores
DISK_BYTES = 16 * 1024 * 1024


def _nodes(lab: BootLab) -> list[dict[str, object]]:
    return list(lab.hub_json("/api/v1/nodes")["nodes"])


def _wait_heartbeats(lab: BootLab, node_id: str, after: float) -> list[dict[str, object]]:
    """The hub's node list once `node_id` has sent a heartbeat after `after` (hub clock)."""
    deadline = time.monotonic() + 60
    while True:
        nodes = _nodes(lab)
        if any(n["node_id"] == node_id and int(str(n["received_at"])) >= int(after)
               for n in nodes):
            return nodes
        assert time.monotonic() < deadline, f"no heartbeat from {node_id}: {nodes}"
        time.sleep(0.5)


def test_the_tpm_gives_the_same_id_at_every_boot_and_the_seed_is_on_no_disk(
        tmp_path: Path, demo_kit: demo_os.Kit, boot_files: BootFiles) -> None:
    kit = demo_kit
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(DISK_BYTES))
    append = kernel_cmdline(BootConfig(farm="lab", channel=demo_os.CHANNEL, hubs=(HUB,),
                                       console=("ttyS0,115200",), extra_args=("quiet",)))
    tpm_a, tpm_b = tmp_path / "tpm-a" / "state", tmp_path / "tpm-b" / "state"

    heard: list[dict[str, object]] = []

    def boot(lab: BootLab, state: Path, name: str, until: str,
             heartbeat_after: float | None = None) -> tuple[str, str, float]:
        """Boot until `until`; with `heartbeat_after`, also wait (VM still up) for the
        node's first heartbeat after that time and keep the hub's node list in `heard`."""
        console = tmp_path / f"console-{name}.log"
        with swtpm.for_qemu(state, tmp_path / f"{name}.ctrl") as ctrl:
            argv = (qemu.base_argv(console, memory_mb=1024) + qemu.tap_nic_argv(TAP)
                    + qemu.tpm_argv(ctrl)
                    + ["-drive", f"file={disk},format=raw,if=virtio"]
                    + qemu.direct_boot_argv(boot_files.kernel, boot_files.initramfs, append))
            with qemu.vm(qemu.nsexec_argv(lab.ns, argv), console, deadline_s=300) as vm:
                ident, _ = vm.wait_for(IDENTITY, BOOT_S)
                _, seconds = vm.wait_for(until, BOOT_S, start=ident.end())
                if heartbeat_after is not None:
                    heard[:] = _wait_heartbeats(lab, ident.group(1), heartbeat_after)
        return ident.group(1), ident.group(2), seconds

    with boot_lab(tmp_path / "lab", "lab", demo_os.CHANNEL, "--hub", HUB) as lab:
        lab.start_hub(kit.publisher_id)
        lab.push(kit.publisher_key, kit.store, kit.manifest(1), root=kit.root)
        first, source, s1 = boot(lab, tpm_a, "a1", READY, heartbeat_after=0.0)
        assert source.startswith("tpm"), source
        t_between = time.time()
        again, _, s2 = boot(lab, tpm_a, "a2", READY, heartbeat_after=t_between)
        assert again == first
        assert [n["node_id"] for n in heard] == [first]  # one node, not a ghost per boot
        other, source_b, s3 = boot(lab, tpm_b, "b", r"zosnode: ready 1 ")
        assert source_b.startswith("tpm") and other != first

    # The seed, derived from TPM state A by the test itself with the same codec.
    with swtpm.server(tpm_a, tmp_path / "a.sock") as sock:
        tpm = swtpm.SwtpmSocket(sock)
        try:
            seed = device.derive(tpm, TPM_LABEL)
        finally:
            tpm.close()
    assert bytes(nacl.signing.SigningKey(seed).verify_key).hex() == first
    image = disk.read_bytes()
    assert len(image) == DISK_BYTES and seed not in image and seed.hex().encode() not in image
    for log in tmp_path.glob("console-*.log"):
        text = log.read_bytes()
        assert seed not in text and seed.hex().encode() not in text
    print(f"QEMU start to ready with a TPM: {s1:.1f} s, reboot {s2:.1f} s, "
          f"fresh TPM {s3:.1f} s")
