"""PID 1 duties: module order, reaping orphans, signals, the fatal path, and the
agent really running as PID 1 of a fresh PID namespace."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.lab.netns import require_root
from zosnode.agent.pid1 import hostname_for, module_order

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")

VIRTIO_NET_DEPS = ("kernel/net/core/failover.ko kernel/drivers/net/net_failover.ko "
                   "kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko")
DEP = f"""\
kernel/fs/fuse/fuse.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/net/virtio_net.ko: {VIRTIO_NET_DEPS}
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/net/netfilter/nf_tables.ko.xz: kernel/net/netfilter/nfnetlink.ko.xz
kernel/net/netfilter/nfnetlink.ko.xz:
"""


def test_module_order_puts_dependencies_first() -> None:
    order, missing = module_order(DEP, ["virtio-net", "fuse", "nf_tables", "nosuch", "fuse"])
    assert missing == ["nosuch"]
    names = [p.rsplit("/", 1)[1] for p in order]
    assert len(names) == len(set(names))  # each once
    for before, after in [("failover.ko", "net_failover.ko"), ("virtio_ring.ko", "virtio.ko"),
                          ("virtio.ko", "virtio_net.ko"), ("net_failover.ko", "virtio_net.ko"),
                          ("nfnetlink.ko.xz", "nf_tables.ko.xz")]:
        assert names.index(before) < names.index(after)


def test_module_order_survives_a_cycle() -> None:
    order, _ = module_order("a.ko: b.ko\nb.ko: a.ko\n", ["a"])
    assert sorted(order) == ["a.ko", "b.ko"]


def test_module_order_on_the_installed_kernel() -> None:
    deps = sorted(glob.glob("/lib/modules/*/modules.dep"))
    if not deps:
        pytest.skip("no kernel modules installed here (linux-image-cloud-amd64)")
    text = Path(deps[-1]).read_text()
    order, missing = module_order(text, ["virtio_net", "fuse", "nf_tables"])
    assert missing == [] and order[-1].split("/")[-1].startswith("nf_tables")
    names = [p.split("/")[-1].split(".ko")[0] for p in order]
    assert names.index("virtio_net") > 0 or "virtio_net" in names


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
