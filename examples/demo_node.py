"""Run the node agent as an ordinary process inside a network namespace.

    ip netns exec NS python3 examples/demo_node.py --cmdline "zos.hub=... zos.channel=demo" \\
        --anchor ANCHOR --run-dir DIR [--poll-ms 2000 --readiness-ms 8000 --heartbeat-s 2]

This is `zosnode node run` minus the PID 1 duties, with the trust anchor given
as a file (a workstation build has none compiled in) and faster intervals, so
that a demo or a test sees upgrades in seconds. Bring-up (firewall, DHCP)
and the boot sequence are the real ones.
"""

from __future__ import annotations

import time

T0 = time.monotonic()

import argparse  # noqa: E402 - the import time is what we measure
import sys  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402

import trio  # noqa: E402

from zosnode.agent import bringup, cmdline, pid1  # noqa: E402
from zosnode.agent.boot import BootSettings, after_network  # noqa: E402
from zosnode.agent.main import run_agent  # noqa: E402
from zosnode.agent.upgrade import PollSchedule  # noqa: E402
from zosnode.trust.signing import load_anchor  # noqa: E402

FUSE_CHILD = [sys.executable, "-m", "zosnode", "_mount-child"]
IMPORTS_MS = round((time.monotonic() - T0) * 1000)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cmdline", required=True)
    p.add_argument("--anchor", type=Path, required=True)
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--cache-dir", type=Path)
    p.add_argument("--poll-ms", type=int, default=2000)
    p.add_argument("--readiness-ms", type=int, default=8000)
    p.add_argument("--heartbeat-s", type=float, default=2.0)
    p.add_argument("--fuse", action="store_true",
                   help="mount flists through FUSE (one child process per flist)")
    args = p.parse_args()

    def say(line: str) -> None:
        sys.stdout.write(f"zosnode: {line}\n")
        sys.stdout.flush()

    parsed = cmdline.parse(args.cmdline)
    for note in parsed.notes:
        say(f"cmdline: {note}")
    config = parsed.config
    settings = BootSettings(
        channel=config.channel, farm=config.farm or "", run_dir=args.run_dir,
        agent_version="0.1.0",
        poll=PollSchedule(args.poll_ms, args.poll_ms // 4),
        readiness_deadline_ms=args.readiness_ms, heartbeat_interval_s=args.heartbeat_s,
    )
    anchor = load_anchor(args.anchor)

    async def after(config: cmdline.Config, network: bringup.Network, say_: pid1.Say) -> None:
        say(f"timing imports_ms={IMPORTS_MS} network_ms="
            f"{round((time.monotonic() - T0) * 1000) - IMPORTS_MS}")
        await after_network(config, network, say_, anchor=anchor, run_dir=args.run_dir,
                            cache_dir=args.cache_dir, settings=settings,
                            fuse_command=FUSE_CHILD if args.fuse else None)

    options = bringup.Options(resolv_conf=args.run_dir / "resolv.conf")
    args.run_dir.mkdir(parents=True, exist_ok=True)
    try:
        trio.run(partial(run_agent, config, say, options, after))
    except KeyboardInterrupt:
        say("stopped")


if __name__ == "__main__":
    main()
