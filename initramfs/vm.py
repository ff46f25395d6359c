#!/usr/bin/env python3
"""`make vm`: boot the demo node in QEMU, on this terminal, for a person to watch.

    sudo python3 initramfs/vm.py

Builds the demo OS (keys, trust anchor, flists, releases), an artifact with
that anchor compiled in, and the initramfs; then creates a namespace holding
a bridge, dnsmasq (DHCP, router advertisements, TFTP with the farm's iPXE
script), a static server for kernel and initramfs, and the hub with release
1. The VM's serial console is this terminal: watch SeaBIOS, iPXE, the kernel
and the agent up to `zosnode: ready 1 <node id>`. Quit with Ctrl-A then X.
Everything it started is stopped by PID and the namespace deleted on exit.
Software emulation: expect about 25 s to ready on a quiet machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOP))

from examples import demo_os  # noqa: E402
from tests.boot.conftest import build_initramfs, build_zipapp  # noqa: E402
from tests.lab import qemu  # noqa: E402
from tests.lab.bootlab import BOOT, HUB, TAP, boot_lab  # noqa: E402


def _terminate(signum: int, _frame: object) -> None:
    # A second signal (make and the terminal often send one each) must not
    # cut the teardown short: ignore them from here on.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    raise SystemExit(128 + signum)  # unwinds: the lab is torn down on the way out


def main() -> int:
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    if os.geteuid() != 0:
        print("vm.py: error: needs root (network namespace, tap, dnsmasq)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="zosnode-vm-") as tmp:
        work = Path(tmp)
        print("building the demo OS, the artifact and the initramfs ...", flush=True)
        kit = demo_os.build(work / "kit")
        (work / "app").mkdir()
        app = build_zipapp(work / "app", anchor=kit.anchor)
        proc = build_initramfs(app, work / "lab" / "www" / "boot" / demo_os.CHANNEL)
        if proc.returncode != 0:
            print(f"vm.py: error: {proc.stderr.strip()}", file=sys.stderr)
            return 1
        print(proc.stdout.strip(), flush=True)
        with boot_lab(work / "lab", "demo-farm", demo_os.CHANNEL, "--hub", HUB,
                      "--boot-url", BOOT) as lab:
            lab.start_hub(kit.publisher_id)
            lab.push(kit.publisher_key, kit.store, kit.manifest(1), root=kit.root)
            print(f"hub {HUB} serves release 1; booting the VM (Ctrl-A X quits)", flush=True)
            # The serial console and QEMU's monitor share this terminal.
            argv = [qemu.QEMU, "-accel", "tcg", "-m", "1024", "-smp", "1", "-nographic",
                    "-serial", "mon:stdio", "-nic", "none", *qemu.tap_nic_argv(TAP),
                    "-boot", "n"]
            subprocess.run(qemu.nsexec_argv(lab.ns, argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
