"""Which NIC carries the node's default route: a pure, deterministic rule.

1. If `zos.net=` pins a NIC, only that NIC is considered.
2. Only NICs holding a lease are candidates.
3. A NIC from which a configured hub answered a TCP connect ranks first.
4. Then a NIC whose lease names a gateway.
5. Ties go to the lowest interface name (byte order), so the same wiring
   gives the same choice on every boot.

The choice waits (at most the settle window) only while another lease could
still change it: not once every NIC with carrier holds a lease, nor once
the NIC that wins every tie holds a lease that reaches a hub (`decided`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
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


def preferred(carrier: Iterable[str]) -> str | None:
    """The NIC no other can outrank once its lease reaches a hub: the lowest name
    among those with carrier (rules 3 and 5)."""
    return min(carrier, key=str.encode, default=None)


def decided(leased: Collection[str], carrier: Collection[str],
            preferred_reaches_hub: bool) -> bool:
    """Whether waiting for more leases could no longer change `choose`'s answer.

    `preferred_reaches_hub`: `preferred(carrier)` holds a lease from which a
    hub answered. A NIC without carrier cannot lease, so it is not waited for
    (one that gains carrier later is taken by the next re-choice).
    """
    return set(carrier) <= set(leased) or preferred_reaches_hub
