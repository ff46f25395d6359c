"""The node's nftables ruleset (through pyroute2) and its drift check. Inbound dropped except
loopback, replies to what the node opened (conntrack), DHCPv4 replies (udp 67 -> 68) and the
neighbour discovery SLAAC needs, with hop limit 255 (on-link only); forwarding dropped; outbound
allowed. A drop in any base chain is final while an accept only ends its own chain, so no other
table can open a hole in ours: drift is checked on ours alone. Re-applying adds a fresh table
before deleting the old one: never unfiltered in between."""

import hashlib
import socket
from collections.abc import Sequence
from typing import Any

from zosnode.net import netlink
from zosnode.net.errors import NetSystemError

TABLE_PREFIX = "zosnode"
FAMILY_INET = 1
NF_DROP, NF_ACCEPT = 0, 1
_META_IIF, _META_NFPROTO, _META_L4PROTO = 4, 15, 16
_CT_STATE = 0
_CT_ESTABLISHED, _CT_RELATED = 2, 4
_BASE_NETWORK, _BASE_TRANSPORT = 1, 2
_CMP_EQ, _CMP_NEQ = 0, 1
_LOOPBACK_IFINDEX = 1  # "lo" is ifindex 1 in every network namespace
_ND_TYPES = (134, 135, 136)  # router advert, neighbour solicit, neighbour advert
Expr = dict[str, Any]


def _genex(name: str, **kwargs: Any) -> Expr:
    data = [(f"NFTA_{name.upper()}_{key.upper()}", value) for key, value in kwargs.items()]
    return {"attrs": [("NFTA_EXPR_NAME", name), ("NFTA_EXPR_DATA", {"attrs": data})]}


def _value(raw: bytes) -> Expr:
    return {"attrs": [("NFTA_DATA_VALUE", raw)]}


def _cmp(raw: bytes, op: int = _CMP_EQ) -> Expr:
    return _genex("cmp", sreg=1, op=op, data=_value(raw))


def _meta(key: int, raw: bytes) -> list[Expr]:
    return [_genex("meta", key=key, dreg=1), _cmp(raw)]


def _payload(base: int, offset: int, raw: bytes) -> list[Expr]:
    return [_genex("payload", dreg=1, base=base, offset=offset, len=len(raw)), _cmp(raw)]


_ACCEPT = _genex("immediate", dreg=0, data={"attrs": [("NFTA_DATA_VERDICT", {"attrs": [
    ("NFTA_VERDICT_CODE", NF_ACCEPT)]})]})


def input_rules() -> list[list[Expr]]:
    established = (_CT_ESTABLISHED | _CT_RELATED).to_bytes(4, "little")
    rules = [
        _meta(_META_IIF, _LOOPBACK_IFINDEX.to_bytes(4, "little")),
        [_genex("ct", key=_CT_STATE, dreg=1),  # replies to our connections
         _genex("bitwise", sreg=1, dreg=1, len=4, mask=_value(established), xor=_value(bytes(4))),
         _cmp(bytes(4), _CMP_NEQ)],
        [*_meta(_META_NFPROTO, bytes((socket.AF_INET,))),  # DHCPv4 replies
         *_meta(_META_L4PROTO, bytes((socket.IPPROTO_UDP,))),
         *_payload(_BASE_TRANSPORT, 0, b"\x00\x43\x00\x44")],
    ]
    rules += [[*_meta(_META_NFPROTO, bytes((socket.AF_INET6,))),
               *_meta(_META_L4PROTO, bytes((socket.IPPROTO_ICMPV6,))),
               *_payload(_BASE_NETWORK, 7, b"\xff"),  # hop limit 255: on-link only
               *_payload(_BASE_TRANSPORT, 0, bytes((icmp_type,)))] for icmp_type in _ND_TYPES]
    return [rule + [_ACCEPT] for rule in rules]


class Firewall:
    """Our table in the current network namespace (call from inside it)."""

    def __init__(self) -> None:
        self._nft = netlink.nftables(FAMILY_INET)
        self.table: str | None = None
        self.fingerprint: str | None = None
        self._generation = 0

    def close(self) -> None:
        self._nft.close()

    def apply(self) -> None:
        self._generation += 1
        new = f"{TABLE_PREFIX}{self._generation}"
        try:
            existing = self._our_tables()
            if new in existing:
                self._nft.table("del", name=new)
            self._nft.table("add", name=new)
            for hook in ("input", "forward"):
                self._nft.chain("add", table=new, name=hook, hook=hook, type="filter",
                                priority=0, policy=NF_DROP)
            for rule in input_rules():
                self._nft.rule("add", table=new, chain="input", expressions=[rule])
            for old in existing:
                if old != new:
                    self._nft.table("del", name=old)
        except Exception as exc:  # noqa: BLE001 - pyroute2 raises many kinds
            raise NetSystemError(f"firewall: nftables refused the ruleset: {exc}") from None
        self.table = new
        self.fingerprint = self.current_fingerprint()

    def _our_tables(self) -> list[str]:
        return [t.get_attr("NFTA_TABLE_NAME") for t in self._nft.get_tables()
                if t["nfgen_family"] == FAMILY_INET
                and str(t.get_attr("NFTA_TABLE_NAME")).startswith(TABLE_PREFIX)]

    def current_fingerprint(self) -> str:
        """A hash over our tables, chains (hook, policy) and rules as the kernel has them."""
        try:
            tables = sorted(self._our_tables())
            # Only ours are decoded: another table may hold expressions pyroute2 cannot parse.
            chains = [(c.get_attr("NFTA_CHAIN_TABLE"), c.get_attr("NFTA_CHAIN_NAME"),
                       c.get_attr("NFTA_CHAIN_POLICY"), _hook(c)) for c in self._nft.get_chains()
                      if c.get_attr("NFTA_CHAIN_TABLE") in tables]
            rules = [(r.get_attr("NFTA_RULE_TABLE"), r.get_attr("NFTA_RULE_CHAIN"),
                      _strip(r.get_attr("NFTA_RULE_EXPRESSIONS"))) for r in self._nft.get_rules()
                     if r.get_attr("NFTA_RULE_TABLE") in tables]
        except Exception as exc:  # noqa: BLE001
            raise NetSystemError(f"firewall: cannot read nftables state: {exc}") from None
        parts = [repr(tables)] + [repr(x) for x in chains + rules]
        return hashlib.blake2b("\n".join(sorted(parts)).encode(), digest_size=16).hexdigest()

    def check(self) -> bool:
        return self.fingerprint is not None and self.current_fingerprint() == self.fingerprint


def _hook(chain: Any) -> Any:
    hook = chain.get_attr("NFTA_CHAIN_HOOK")
    return None if hook is None else (hook.get_attr("NFTA_HOOK_HOOKNUM"),
                                      hook.get_attr("NFTA_HOOK_PRIORITY"))


def _strip(exprs: Sequence[Any] | None) -> list[Any]:
    """Expressions as plain data, without counters that change per packet."""
    out: list[Any] = []
    for e in exprs or ():
        data = e.get_attr("NFTA_EXPR_DATA")
        attrs = [] if data is None else [(a[0], repr(a[1])) for a in data["attrs"]]
        out.append((e.get_attr("NFTA_EXPR_NAME"), attrs))
    return out


