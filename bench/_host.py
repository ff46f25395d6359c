"""What the benchmark host does with freed memory, which these machines' figures depend on.

These machines are VMs whose virtio balloon has free page reporting: the guest
kernel tells the host about free 2 MiB blocks after ~2 s, the host drops them,
and the next touch of such a page makes the host fault it in again (~12 us a
4 KiB page here, about 3 ms a MiB: bench/datapath.md). A benchmark whose pages
come back from the host pays that on top of its own work, the more memory it
touches the more, so the bigger side of a comparison (zosnode's mount against
the trivial FS, a node against the trivial /init) pays more of it. A real node
on bare metal has no balloon.

`--hold-freed-pages` turns the reporting off for the run (root; restored after),
so freed memory stays backed and only the run's first touch of a page pays.
Each benchmark prints the state it ran in.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PARAM = Path("/sys/module/page_reporting/parameters/page_reporting_order")
VIRTIO = Path("/sys/bus/virtio/devices")
BUDDYINFO = Path("/proc/buddyinfo")
_BALLOON_DEVICE = "0x0005"
_F_REPORTING = 5  # VIRTIO_BALLOON_F_REPORTING


def _balloon_reports() -> bool:
    for dev in VIRTIO.glob("*"):
        try:
            if (dev / "device").read_text().strip() != _BALLOON_DEVICE:
                continue
            features = (dev / "features").read_text().strip()
        except OSError:
            continue
        return len(features) > _F_REPORTING and features[_F_REPORTING] == "1"
    return False


def _orders() -> int:
    """The page allocator's number of orders (11 on x86-64): an order this high reports none."""
    first = BUDDYINFO.read_text().splitlines()[0].split()
    return len(first) - 4  # "Node 0, zone DMA" then one count per order


def state() -> str:
    if not _balloon_reports() or not PARAM.exists():
        return "free page reporting: absent (no virtio balloon reporting to a host)"
    order = int(PARAM.read_text())
    if order >= _orders():
        return "free page reporting: off (freed pages stay backed by the host)"
    return (f"free page reporting: on (free blocks of order {order} and up go back to the host; "
            "--hold-freed-pages turns it off for the run)")


def add_argument(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--hold-freed-pages", action="store_true",
                    help="turn the VM's free page reporting off for the run (bench/_host.py)")


@contextmanager
def freed_pages_held(hold: bool) -> Iterator[None]:
    """With `hold`, free page reporting off until the block ends (then as it was)."""
    if not hold or not _balloon_reports() or not PARAM.exists():
        print(state(), flush=True)
        yield
        return
    before = PARAM.read_text().strip()
    try:
        PARAM.write_text(str(_orders()))
    except OSError as exc:
        why = f"--hold-freed-pages: cannot write {PARAM}: {exc.strerror} (root?)"
        raise SystemExit(why) from None
    try:
        print(state(), flush=True)
        yield
    finally:
        PARAM.write_text(before)
