"""Which NIC carries the node's default route: a pure rule, the same choice for the same
wiring on every boot (docs/network-bringup.md): the pinned NIC only (`zos.net=`), leased
NICs only, then one a hub answered through, then one with a gateway, then the lowest name."""

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
    elif len(leased) == 1:
        why = "only lease"
    elif best.has_gateway:
        why = "no NIC reaches a hub; first with a gateway"
    else:
        why = "first leased NIC by name"
    others = len(leased) - 1
    return Choice(best.name, why + (f" ({others} other lease{'s' * (others != 1)})"
                                    if others else ""))


def preferred(carrier: Iterable[str]) -> str | None:
    """The NIC no other outranks once its lease reaches a hub: the lowest name with carrier."""
    return min(carrier, key=str.encode, default=None)


def decided(leased: Collection[str], carrier: Collection[str], preferred_reaches_hub: bool) -> bool:
    """Whether more leases could no longer change `choose`'s answer (the settle wait ends).
    A NIC without carrier cannot lease, so it is not waited for (the next re-choice takes it)."""
    return set(carrier) <= set(leased) or preferred_reaches_hub
