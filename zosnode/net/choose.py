"""Which NIC carries the node's default route: a pure, deterministic rule.

1. If `zos.net=` pins a NIC, only that NIC is considered.
2. Only NICs holding a lease are candidates.
3. A NIC from which a configured hub answered a TCP connect ranks first.
4. Then a NIC whose lease names a gateway.
5. Ties go to the lowest interface name (byte order), so the same wiring
   gives the same choice on every boot.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    name: str
    leased: bool
    reaches_hub: bool
    has_gateway: bool


@dataclass(frozen=True)
class Choice:
    name: str | None
    reason: str


def choose(candidates: Iterable[Candidate], pinned: str | None = None) -> Choice:
    pool = sorted(candidates, key=lambda c: c.name.encode())
    if pinned is not None:
        pool = [c for c in pool if c.name == pinned]
        if not pool:
            return Choice(None, f"pinned NIC {pinned} not present")
    leased = [c for c in pool if c.leased]
    if not leased:
        return Choice(None, "no NIC holds a lease")
    best = min(leased, key=lambda c: (not c.reaches_hub, not c.has_gateway, c.name.encode()))
    if pinned is not None:
        why = "pinned by zos.net"
    elif best.reaches_hub:
        why = "reaches a hub"
    elif best.has_gateway:
        why = "no NIC reaches a hub; first with a gateway" if len(leased) > 1 else "only lease"
    else:
        why = "only lease" if len(leased) == 1 else "first leased NIC by name"
    others = len(leased) - 1
    return Choice(best.name, why + (f" ({others} other lease{'s' * (others != 1)})"
                                    if others else ""))
