"""A VM's local disk as the block cache: kept across reboots, checked, never touched unasked.

Direct kernel boot of the test initramfs with `zos.cache=auto`, no TPM, the
real hub in a lab namespace, and two virtio disks: vda an ext4 labelled
ZOSCACHE made here (a sparse file), vdb an unlabelled disk of data.

Boot 1 meets a refused manifest first, then a good one: at ready the console's
current error is empty and the refusal is the last error, with its age. The
node keeps its key on the cache disk (the heartbeat says `disk`) and reports
both disks with their role. Boot 2 (same release) fetches no block from the
hub and has the same node id. Between boots 2 and 3 the test rewrites one
cached block whole (a valid entry checksum over other bytes, as an attacker
would): boot 3 detects it, fetches that block alone and reports it. vdb's
sha256 never changes. The degraded cases are in test_cache_disk_degraded.py.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from examples import demo_os
from tests.boot.conftest import BootFiles
from tests.datapath.conftest import cache_entry
from tests.lab import qemu
from tests.lab.bootlab import HUB, TAP, BootLab, boot_lab
from zosnode.bootmedia.ipxe import BootConfig, kernel_cmdline
from zosnode.cache.store import SEED

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("root_lab"),
              pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="needs mkfs.ext4")]
READY = r"zosnode: ready (\d+) ([0-9a-f]{64})"
IDENTITY = r"node id ([0-9a-f]{64}) \(identity from ([^)\n]*)\)"
BOOT_S = 180  # QEMU start to ready, software emulation on shared cores
MIB = 1 << 20


def cmdline(*extra: str) -> str:
    return kernel_cmdline(BootConfig(farm="lab", channel=demo_os.CHANNEL, hubs=(HUB,),
                                     console=("ttyS0,115200",), extra_args=("quiet", *extra)))


def make_ext4(path: Path, size: int, label: str = "ZOSCACHE") -> Path:
    with open(path, "wb") as f:
        f.truncate(size)  # sparse
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", label, str(path)], check=True)
    return path


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MIB):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def mounted(image: Path, where: Path) -> Iterator[Path]:
    """The image loop-mounted on the host (root), for the test to look and tamper."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def blocks_served(lab: BootLab) -> tuple[int, int]:
    """(block GETs answered 200, bytes of block bodies) from the hub's metrics."""
    text = lab.hub_get("/metrics")
    n = sum(int(m.group(1)) for m in re.finditer(
        r'zos_hub_requests_total\{route="/blocks",method="GET",status="200"\} (\d+)', text))
    b = re.search(r'zos_hub_bytes_served_total\{route="/blocks"\} (\d+)', text)
    return n, int(b.group(1)) if b else 0


def settled_blocks(lab: BootLab, quiet_s: float = 6.0, limit_s: float = 90.0) -> tuple[int, int]:
    """The block counters once no block was fetched for `quiet_s` (prefetch done)."""
    last, since, end = blocks_served(lab), time.monotonic(), time.monotonic() + limit_s
    while time.monotonic() - since < quiet_s and time.monotonic() < end:
        time.sleep(1)
        now = blocks_served(lab)
        if now != last:
            last, since = now, time.monotonic()
    return last


def heartbeat_of(lab: BootLab, node_id: str, after: float,
                 want: Callable[[dict[str, Any]], bool] = lambda n: True) -> dict[str, Any]:
    """The hub's record of `node_id` from a heartbeat received after `after` (hub clock)
    that `want`s (heartbeats come at ready, then every 30 s)."""
    deadline = time.monotonic() + 90
    while True:
        for n in lab.hub_json("/api/v1/nodes")["nodes"]:
            if n["node_id"] == node_id and n["received_at"] >= int(after) and want(n):
                return dict(n)
        assert time.monotonic() < deadline, f"no heartbeat from {node_id} as wanted"
        time.sleep(1)


def test_cache_disk_keeps_blocks_and_identity_catches_tampering_and_spares_other_disks(
        tmp_path: Path, demo_kit: demo_os.Kit, boot_files: BootFiles) -> None:
    kit = demo_kit
    cache = make_ext4(tmp_path / "cache.img", 64 * MIB)
    other = tmp_path / "other.img"
    other.write_bytes(b"precious data, never the node's\n" * 32 * 1024)  # 1 MiB, no fs
    other_sum = sha256(other)
    append = cmdline("zos.cache=auto")
    report: list[str] = []

    def boot(lab: BootLab, name: str, meanwhile: Callable[[qemu.Vm, int], None] | None = None
             ) -> tuple[qemu.Vm, str, str, float]:
        console = tmp_path / f"console-{name}.log"
        argv = (qemu.base_argv(console, memory_mb=1024) + qemu.tap_nic_argv(TAP)
                + qemu.disk_argv(cache, other)
                + qemu.direct_boot_argv(boot_files.kernel, boot_files.initramfs, append))
        vm = qemu.Vm(qemu.nsexec_argv(lab.ns, argv), console, deadline_s=400)
        try:
            ident, _ = vm.wait_for(IDENTITY, BOOT_S)
            if meanwhile is not None:
                meanwhile(vm, ident.end())
            ready, seconds = vm.wait_for(READY, BOOT_S, start=ident.end())
        except BaseException:
            vm.stop()
            raise
        assert ready.group(2) == ident.group(1)
        return vm, ident.group(1), ident.group(2), seconds

    with boot_lab(tmp_path / "lab", "lab", demo_os.CHANNEL, "--hub", HUB) as lab:
        lab.start_hub(kit.publisher_id)
        lab.push(kit.publisher_key, kit.store, kit.manifest(1), root=kit.root)
        # Boot 1 meets a manifest signed by a stranger first.
        channel = lab.hub_data / "channels" / demo_os.CHANNEL / "manifest"
        honest = channel.read_bytes()
        channel.write_bytes(demo_os.stranger_release(kit, tmp_path / "stranger.key", 7))
        def publish_honest(vm: qemu.Vm, start: int) -> None:
            vm.wait_for(r"manifest refused: [^\n]*", BOOT_S, start=start)
            channel.write_bytes(honest)  # the node retries (backing off from 0.5 s)

        before = blocks_served(lab)
        t0 = time.time()
        vm, node_id, source, s1 = boot(lab, "1", publish_honest)
        try:
            assert source.startswith("disk"), source
            hb = heartbeat_of(lab, node_id, t0)
            text = vm.text()
            # The refusal was the current error; on the status drawn at ready it is the
            # last error, with its age, and nothing is wrong now.
            board = text[text.rindex("zosnode: phase    ready"):]
            m = re.search(r"zosnode: error    ([^\r\n]*)\r?\nzosnode: (last     [^\r\n]*)",
                          board)
            assert m and m.group(1) == "-", board[:2000]
            # (a retry before the good one was published: the hub answers the refused
            # manifest's ETag with 304, and that is the last thing that went wrong)
            assert re.fullmatch(r"last     (manifest refused: .*|hub said not modified before "
                                r"we had a manifest.*) \(\d+ s ago\)", m.group(2)), m[2]
            assert re.search(r"zosnode: boot phases: modules \d+\.\ds network .* ready \d", text)
            first = settled_blocks(lab)
        finally:
            vm.stop()
        fetched1 = (first[0] - before[0], first[1] - before[1])
        assert fetched1[0] > 0
        assert hb["identity_source"] == "disk"
        disks = {d["name"]: d for d in hb["hardware"]["disks"]}
        assert disks["vda"]["role"] == "cache" and disks["vdb"]["role"] == "untouched"
        assert disks["vda"]["size_bytes"] == 64 * MIB
        assert [r["kind"] for r in hb["refusals"]] == ["manifest"]

        t1 = time.time()
        vm, again, source, s2 = boot(lab, "2")
        try:
            # The FUSE children's reads: all from the disk (their counts reach the agent
            # every 2 s: maybe the heartbeat after the first).
            hb2 = heartbeat_of(lab, again, t1, lambda n: n["cache"]["hits"] > 0)
            second = settled_blocks(lab)
        finally:
            vm.stop()
        assert again == node_id and source.startswith("disk")
        assert second[0] - first[0] == 0, "the second boot fetched blocks from the hub"
        cache2 = hb2["cache"]
        assert cache2["place"] == "disk" and cache2["misses"] == 0 and cache2["refetched"] == 0
        assert cache2["hit_rate"] == 1.0
        assert 0 < cache2["used_bytes"] <= cache2["size_bytes"] <= 64 * MIB

        with mounted(cache, tmp_path / "mnt") as mnt:
            assert (mnt / "node.key").stat().st_size == 32
            victim = sorted((mnt / "blocks").glob("*/*"))[0]
            victim.write_bytes(cache_entry(SEED, b"not the block you are looking for"))
        t2 = time.time()
        vm, third_id, _, s3 = boot(lab, "3")
        try:
            assert f"cache: block {victim.name[:16]} altered on the disk" in vm.text()
            hb3 = heartbeat_of(lab, third_id, t2, lambda n: n["cache"]["refetched"] >= 1)
            third = settled_blocks(lab)
        finally:
            vm.stop()
        assert third_id == node_id
        assert third[0] - second[0] == 1, "only the altered block is fetched again"
        assert hb3["cache"]["refetched"] == 1
    assert sha256(other) == other_sum
    report.append(f"QEMU start to ready with the cache disk: first boot {s1:.1f} s "
                  f"({fetched1[0]} blocks, {fetched1[1]} bytes fetched), second {s2:.1f} s "
                  f"(0 blocks), after tampering {s3:.1f} s (1 block)")
    print("\n".join(report))
