"""PID 1 duties: module order, reaping orphans, signals, the fatal path, and the
agent really running as PID 1 of a fresh PID namespace."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.lab.netns import require_root
from zosnode.agent.pid1 import hostname_for, modules_to_load

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")

LISTING = """\
kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci.ko pci:v00001AF4d*sv*sd*bc*sc*i*
kernel/drivers/net/ethernet/amazon/ena/ena.ko pci:v00001D0Fd0000EC20sv*sd*bc*sc*i* \
pci:v00001D0Fd0000EC21sv*sd*bc*sc*i*
kernel/drivers/net/ethernet/mellanox/mlx4/mlx4_core.ko pci:v000015B3d00001003sv*sd*bc*sc*i*
kernel/drivers/net/ethernet/mellanox/mlx4/mlx4_en.ko pci:v000015B3d00001003sv*sd*bc*sc*i*

kernel/fs/fuse/fuse.ko
kernel/net/netfilter/nf_tables.ko.xz
"""
# What QEMU's q35/i440fx machines show: host bridge, ISA bridge, VGA, a virtio NIC.
QEMU_PCI = ("pci:v00008086d00001237sv00001AF4sd00001100bc06sc00i00",
            "pci:v00008086d00007000sv00001AF4sd00001100bc06sc01i00",
            "pci:v00001234d00001111sv00001AF4sd00001100bc03sc00i00",
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00")


def split(listing: str, devices: Sequence[str], present: Callable[[str], bool] = lambda p: False
          ) -> tuple[list[str], list[str]]:
    """(paths loaded, paths left out) of `listing` against a fixed device list."""
    load: list[str] = []
    out: list[str] = []
    for path, wanted in modules_to_load(listing, lambda: devices, present):
        (load if wanted else out).append(path)
    return load, out


def test_modules_without_a_present_pci_device_are_left_out() -> None:
    load, out = split(LISTING, QEMU_PCI)
    names = [p.rsplit("/", 1)[1] for p in load]
    assert names == ["virtio_ring.ko", "virtio_pci.ko", "fuse.ko", "nf_tables.ko.xz"]
    assert [p.rsplit("/", 1)[1] for p in out] == ["ena.ko", "mlx4_core.ko", "mlx4_en.ko"]
    # A ConnectX-3 present: its driver and what needs it load, in the listing's order.
    load, out = split(LISTING, (*QEMU_PCI, "pci:v000015B3d00001003sv000015B3sd00000050"
                                                     "bc02sc00i00"))
    assert [p.rsplit("/", 1)[1] for p in load][2:4] == ["mlx4_core.ko", "mlx4_en.ko"]
    assert [p.rsplit("/", 1)[1] for p in out] == ["ena.ko"]


def test_a_bus_of_which_no_device_was_read_decides_nothing() -> None:
    load, out = split(LISTING, ())
    assert out == [] and len(load) == 7
    assert split("", QEMU_PCI) == ([], [])
    hyperv = "kernel/hv_vmbus.ko acpi*:VMBUS:* acpi*:VMBus:*\nkernel/ena.ko pci:v00001D0Fd*\n"
    # PCI devices read, no ACPI device: the ACPI-bus driver stays, the absent PCI one goes.
    assert split(hyperv, QEMU_PCI) == (["kernel/hv_vmbus.ko"], ["kernel/ena.ko"])
    assert split(hyperv, [*QEMU_PCI, "acpi:PNP0A03:"]) == (
        [], ["kernel/hv_vmbus.ko", "kernel/ena.ko"])
    # On Hyper-V with no PCI device read, both stay.
    assert split(hyperv, ["acpi:MSFT1000:VMBus:"]) == (
        ["kernel/hv_vmbus.ko", "kernel/ena.ko"], [])


def test_each_line_is_decided_at_its_turn_by_the_devices_then_known() -> None:
    """virtio devices appear once their transport's module is in: a virtio driver's line asks
    for the devices only when its turn comes, after the lines before it have loaded."""
    listing = ("kernel/virtio_pci.ko pci:v00001AF4d*\nkernel/virtio_net.ko virtio:d00000001v*\n"
               "kernel/virtio_blk.ko virtio:d00000002v*\nkernel/fuse.ko\n")
    devices = list(QEMU_PCI)
    lines = modules_to_load(listing, lambda: devices, lambda p: False)
    assert next(lines) == ("kernel/virtio_pci.ko", True)
    devices.append("virtio:d00000001v00001AF4")  # what loading virtio_pci made
    assert list(lines) == [("kernel/virtio_net.ko", True), ("kernel/virtio_blk.ko", False),
                           ("kernel/fuse.ko", True)]
    # Before any virtio device is known (none read), the bus decides nothing.
    assert split(listing, QEMU_PCI)[1] == []


def test_a_path_gates_by_its_presence(tmp_path: Path) -> None:
    """A bus or firmware whose devices come too late to read: its sysfs directory decides."""
    listing = ("kernel/xen-netfront.ko /sys/hypervisor/type\nkernel/efivarfs.ko /sys/firmware/efi\n"
               "kernel/scsi_mod.ko /sys/bus/scsi virtio:d00000008v*\n")
    there = {"/sys/firmware/efi"}
    load, out = split(listing, [*QEMU_PCI, "virtio:d00000001v00001AF4"], there.__contains__)
    assert load == ["kernel/efivarfs.ko"]
    assert out == ["kernel/xen-netfront.ko", "kernel/scsi_mod.ko"]
    # A virtio SCSI controller present: the SCSI core loads for it.
    load, _ = split(listing, [*QEMU_PCI, "virtio:d00000008v00001AF4"], there.__contains__)
    assert "kernel/scsi_mod.ko" in load
    # The default asks the file system.
    (tmp_path / "xen").mkdir()
    got = list(modules_to_load(f"kernel/x.ko {tmp_path / 'xen'}\nkernel/y.ko {tmp_path / 'no'}\n",
                               lambda: ()))
    assert got == [("kernel/x.ko", True), ("kernel/y.ko", False)]


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="pci:v0A*?[]!-", max_size=16),
       st.lists(st.text(alphabet="pci:v0A*?[]!-", max_size=16), max_size=4))
def test_a_modalias_pattern_matches_as_fnmatch_does(alias: str, devices: list[str]) -> None:
    """The literal-prefix check before fnmatch (which compiles a regex per pattern) never
    changes an answer."""
    from fnmatch import fnmatchcase

    from zosnode.agent.pid1 import _matches

    pattern = "pci:" + alias
    on_bus = ["pci:" + d for d in devices]
    assert _matches(pattern, on_bus, lambda p: False) == (
        not on_bus or any(fnmatchcase(d, pattern) for d in on_bus))


@settings(max_examples=300, deadline=None)
@given(st.text(), st.lists(st.text(max_size=40), max_size=5))
def test_any_listing_and_devices_split_every_path_once_in_order(
        listing: str, devices: list[str]) -> None:
    load, out = split(listing, devices)
    paths = [line.split()[0] for line in listing.splitlines() if line.strip()]
    assert sorted(load + out) == sorted(paths)
    for kept in (load, out):  # each a subsequence of the listing's order
        rest = iter(paths)
        assert all(any(p == q for q in rest) for p in kept)


def test_hostname_from_node_id() -> None:
    assert hostname_for("AB" * 32) == "zos-abababababababab"


REAPER_SCRIPT = textwrap.dedent("""
    import os, sys, time
    from zosnode.agent.pid1 import Reaper, become_subreaper
    become_subreaper()
    for _ in range(5):
        if os.fork() == 0:          # child: leave an orphan behind, then exit
            if os.fork() == 0:
                os._exit(3)          # the orphan exits and becomes our zombie
            os._exit(0)
    def stat(pid):  # state and parent; None for a process that exited since the listing
        try:
            with open(f'/proc/{pid}/stat') as f:
                return f.read().rsplit(')', 1)[1].split()[:2]
        except OSError:
            return None
    def zombies():
        me = ['Z', str(os.getpid())]
        return [p for p in os.listdir('/proc') if p.isdigit() and stat(p) == me]
    deadline = time.monotonic() + 10
    while len(zombies()) < 10 and time.monotonic() < deadline:  # 5 children, 5 orphans
        time.sleep(0.02)
    r = Reaper(grace=2.0)
    assert r.reap_once(100.0) == []           # first seen: an owner may still reap them
    assert r.reap_once(101.0) == []
    reaped = r.reap_once(102.0)
    codes = sorted(set(os.WEXITSTATUS(s) for _, s in reaped))
    print(len(reaped), codes, zombies() == [])
""")


def test_reaper_reaps_orphans_after_the_grace_period() -> None:
    out = subprocess.run([sys.executable, "-c", REAPER_SCRIPT], env=ENV, capture_output=True,
                         text=True, timeout=30)
    assert out.stdout.split() == ["10", "[0,", "3]", "True"], out.stderr


AGENT_SCRIPT = textwrap.dedent("""
    import sys, trio
    from zosnode.agent.pid1 import console_writer, run_node
    mode = sys.argv[1]
    async def main():
        print("zosnode: main running", flush=True)
        if mode == "fail":
            raise OSError("disk on fire")
        await trio.sleep_forever()
    sys.exit(run_node(main, console_writer(sys.stdout), 0.1, pid1=False))
""")


def agent(mode: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", AGENT_SCRIPT, mode], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "zosnode: main running\n"
    return proc


@pytest.mark.parametrize(("sig", "action"), [(signal.SIGTERM, "poweroff"),
                                              (signal.SIGINT, "reboot")])
def test_signals_stop_the_agent_in_order_outside_pid1(sig: int, action: str) -> None:
    proc = agent("wait")
    time.sleep(0.3)
    os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert f"orderly {action}" in out and f"stopped ({action})" in out
    assert "Traceback" not in err


def test_fatal_error_outside_pid1_is_one_line_and_exit_1() -> None:
    proc = subprocess.run([sys.executable, "-c", AGENT_SCRIPT, "fail"], env=ENV,
                          capture_output=True, text=True, timeout=10)
    out, err = proc.stdout, proc.stderr
    assert proc.returncode == 1
    assert "zosnode: fatal: OSError: disk on fire" in out
    assert "Traceback" not in err


def _ns_init_pid(unshare_pid: int, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            kids = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children").read_text().split()
        except OSError:
            kids = []
        if kids:
            return int(kids[0])
        time.sleep(0.05)
    raise AssertionError("unshare never forked its PID 1")


def _as_pid1(*args: str) -> subprocess.Popen[str]:
    require_root("PID namespaces")
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux)")
    return subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount", "--net", "--propagation", "private",
         sys.executable, "-m", "zosnode", "node", "run", *args],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_as_pid1_fatal_error_shows_and_reboots_after_delay() -> None:
    """A fatal error as PID 1 is shown, then reboot(2) after the delay: in a PID
    namespace the kernel turns that reboot into SIGHUP for the namespace's init."""
    t0 = time.monotonic()
    proc = _as_pid1("--cmdline-file", "/nonexistent/cmdline", "--fatal-delay", "1")
    out, _ = proc.communicate(timeout=30)
    assert "zosnode: mounted proc on /proc" in out
    assert "zosnode: fatal: UserError: cannot read command line file" in out
    assert "zosnode: rebooting in 1s" in out
    assert time.monotonic() - t0 >= 1
    assert proc.returncode in (-signal.SIGHUP, 128 + signal.SIGHUP), (proc.returncode, out)


def test_as_pid1_sigterm_is_an_orderly_poweroff() -> None:
    proc = _as_pid1("--network-only", "--cmdline", "zos.farm=f1 zos.root=evil")
    init = _ns_init_pid(proc.pid)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "no Ethernet NIC found" in line:
            break
    os.kill(init, signal.SIGTERM)
    out = "".join(seen) + proc.communicate(timeout=20)[0]
    assert "refused zos.root" in out and "firewall applied" in out
    assert "mounted tmpfs on /var/lib/zosnode" in out and "entropy:" in out
    assert "SIGTERM: orderly poweroff" in out
    # reboot(POWER_OFF) from a namespace's init ends it with SIGINT.
    assert proc.returncode in (-signal.SIGINT, 128 + signal.SIGINT), (proc.returncode, out)


def test_node_run_refuses_the_host_network_namespace() -> None:
    """Outside PID 1 the agent would replace a workstation's firewall and routes."""
    # The missing command line file is a second line of defence: were the guard to
    # fail, the agent would stop on it before touching the network.
    out = subprocess.run([sys.executable, "-m", "zosnode", "node", "run",
                          "--cmdline-file", "/nonexistent/cmdline", "--exit-after-bringup"],
                         env=ENV, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert out.stderr.strip().endswith("(ip netns exec NAME zosnode node run ...)")
    assert len(out.stderr.strip().splitlines()) == 1 and out.stdout == ""


def test_node_run_missing_cmdline_file_is_a_user_error() -> None:
    require_root()
    from tests.lab.netns import netns, nsexec

    with netns("zp") as ns:
        out = subprocess.run(nsexec(ns, sys.executable, "-m", "zosnode", "node", "run",
                                    "--cmdline-file", "/nonexistent/cmdline"),
                             env=ENV, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert out.stderr == ("zosnode: error: cannot read command line file "
                          "/nonexistent/cmdline: No such file or directory\n")


OWNER_SCRIPT = textwrap.dedent("""
    import os, subprocess, sys, trio
    from zosnode.agent.pid1 import Reaper, become_subreaper
    become_subreaper()
    async def main():
        r = Reaper(grace=0.2)
        async with trio.open_nursery() as n:
            await n.start(r.run)
            codes = [(await trio.run_process([sys.executable, "-c", "import sys; sys.exit(7)"],
                                             check=False)).returncode for _ in range(10)]
            # An orphan: its parent exits at once; the reaper must collect it.
            subprocess.run([sys.executable, "-c", "import os\\nif os.fork() == 0: os._exit(5)"])
            with trio.move_on_after(10):
                while r.reaped < 1:
                    await trio.sleep(0.05)
            print(codes == [7] * 10, r.reaped)
            n.cancel_scope.cancel()
    trio.run(main)
""")


def test_reaper_running_beside_trio_processes_keeps_their_exit_status() -> None:
    out = subprocess.run([sys.executable, "-c", OWNER_SCRIPT], env=ENV, capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.split() == ["True", "1"], out.stderr
