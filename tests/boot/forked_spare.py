"""Run as a script (one thread, as the agent is when it forks): fork the spare, mount through it.

`python -m tests.boot.forked_spare FLIST_FILE FLIST_ID HUB MOUNTPOINT CACHE`: prints the
child's kind, what the mount said, and the mounted /etc/hostname or the failure's kind."""

import os
import sys
from pathlib import Path

import trio

from zosnode.agent import spare

COMMAND = ["the-agent's-own-mount-child"]
spare.fork(COMMAND)  # before anything below starts a thread

from zosnode.agent.boot.mounters import FuseChildMounter, MountChildFailed  # noqa: E402
from zosnode.trust.manifest import FlistPin  # noqa: E402


async def main(raw: bytes, pin: FlistPin, hub: str, where: Path, cache: Path) -> None:
    child, _ = spare.spares[tuple(COMMAND)]
    print(type(child).__name__, child.pid)
    said: list[str] = []
    mounter = FuseChildMounter(COMMAND, mirrors=lambda: [hub], cache_dir=cache, say=said.append)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(mounter.serve, pin, raw, where)
            print(said[0])
            print(await trio.to_thread.run_sync((where / "etc" / "hostname").read_text), end="")
            nursery.cancel_scope.cancel()
    except* MountChildFailed as group:
        print(f"failed: {group.exceptions[0].kind.value}")
    try:
        os.kill(child.pid, 0)
    except ProcessLookupError:
        print("reaped")


if __name__ == "__main__":
    flist_file, fid, hub, where, cache = sys.argv[1:]
    raw = Path(flist_file).read_bytes()
    trio.run(main, raw, FlistPin(name="os", id=fid, size=len(raw), mount="/"), hub,
             Path(where), Path(cache))
