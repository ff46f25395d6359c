"""The node's nftables ruleset and its drift check. Inbound dropped except loopback, replies to
what the node opened (conntrack), DHCPv4 replies (udp 67 -> 68) and the neighbour discovery
SLAAC needs, with hop limit 255 (on-link only); forwarding dropped; outbound allowed. A drop in
any base chain is final while an accept only ends its own chain, so no other table can open a
hole in ours: drift is checked on ours alone. Applying is one nftables transaction that adds a
fresh table and deletes the old one: never unfiltered in between, never half a ruleset."""

import hashlib
import socket

from zosnode.net import netlink, nlwire
from zosnode.net.nlwire import ACK, APPEND, CREATE, DUMP, REQUEST, attr, nest, strz

TABLE_PREFIX = "zosnode"
FAMILY_INET, NF_DROP, NF_ACCEPT = 1, 0, 1
_NFT = 10 << 8  # NFNL_SUBSYS_NFTABLES, a message type's high byte
NEWTABLE, GETTABLE, DELTABLE, NEWCHAIN, GETCHAIN, NEWRULE, GETRULE = 0, 1, 2, 3, 4, 6, 7
_BATCH_BEGIN, _BATCH_END = 0x10, 0x11
_BATCH = bytes((0, 0, 0, 10))  # the batch messages' nfgenmsg: AF_UNSPEC, nftables' subsystem
_HOOKS = {"input": 1, "forward": 2}  # NF_INET_LOCAL_IN, NF_INET_FORWARD
# Attribute types: a table's name, a chain's (table, name, hook, policy, type), a rule's.
TABLE_NAME, CHAIN_TABLE, CHAIN_NAME, CHAIN_HOOK, CHAIN_POLICY, CHAIN_TYPE = 1, 1, 3, 4, 5, 7
RULE_TABLE, RULE_CHAIN, RULE_EXPRESSIONS = 1, 2, 4
_META_IIF, _META_NFPROTO, _META_L4PROTO = 4, 15, 16
_CT_STATE, _CT_ESTABLISHED, _CT_RELATED = 0, 2, 4
_BASE_NETWORK, _BASE_TRANSPORT = 1, 2
_CMP_EQ, _CMP_NEQ = 0, 1
_REG_VERDICT, _REG_1 = 0, 1
_LOOPBACK_IFINDEX = 1  # "lo" is ifindex 1 in every network namespace
_ND_TYPES = (134, 135, 136)  # router advert, neighbour solicit, neighbour advert


def _be32(kind: int, value: int) -> bytes:
    return nlwire.u32(kind, value, "big")  # nftables' integers are big-endian


def _expr(name: str, *data: bytes) -> bytes:
    return nest(1, strz(1, name), nest(2, *data))  # a list element: name, data


def _value(kind: int, raw: bytes) -> bytes:
    return nest(kind, attr(1, raw))


def _cmp(raw: bytes, op: int = _CMP_EQ) -> bytes:
    return _expr("cmp", _be32(1, _REG_1), _be32(2, op), _value(3, raw))


def _meta(key: int, raw: bytes) -> list[bytes]:
    return [_expr("meta", _be32(1, _REG_1), _be32(2, key)), _cmp(raw)]


def _payload(base: int, offset: int, raw: bytes) -> list[bytes]:
    return [_expr("payload", _be32(1, _REG_1), _be32(2, base), _be32(3, offset),
                  _be32(4, len(raw))), _cmp(raw)]


_ACCEPT = _expr("immediate", _be32(1, _REG_VERDICT), nest(2, nest(2, _be32(1, NF_ACCEPT))))


def input_rules() -> list[list[bytes]]:
    established = (_CT_ESTABLISHED | _CT_RELATED).to_bytes(4, "little")
    rules = [
        _meta(_META_IIF, _LOOPBACK_IFINDEX.to_bytes(4, "little")),
        [_expr("ct", _be32(1, _REG_1), _be32(2, _CT_STATE)),  # replies to our connections
         _expr("bitwise", _be32(1, _REG_1), _be32(2, _REG_1), _be32(3, 4),
               _value(4, established), _value(5, bytes(4))),
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


def _message(kind: int, flags: int, payload: bytes) -> netlink.Request:
    return _NFT | kind, REQUEST | flags, bytes((FAMILY_INET, 0, 0, 0)) + payload  # nfgenmsg


class Firewall:
    """Our table in the current network namespace (call from inside it)."""

    def __init__(self) -> None:
        self._nl = netlink.Socket(netlink.NETFILTER)
        self.table: str | None = None
        self.fingerprint: str | None = None
        self._generation = 0

    def close(self) -> None:
        self._nl.close()

    def apply(self) -> None:
        self._generation += 1
        new = f"{TABLE_PREFIX}{self._generation}"
        existing = self._our_tables()
        batch = [(_BATCH_BEGIN, REQUEST, _BATCH)]
        if new in existing:  # a table of an earlier agent's
            batch.append(_message(DELTABLE, ACK, strz(TABLE_NAME, new)))
        batch.append(_message(NEWTABLE, ACK | CREATE, strz(TABLE_NAME, new)))
        for hook, number in _HOOKS.items():
            batch.append(_message(NEWCHAIN, ACK | CREATE, strz(CHAIN_TABLE, new) +
                                  strz(CHAIN_NAME, hook) +
                                  nest(CHAIN_HOOK, _be32(1, number), _be32(2, 0)) +
                                  _be32(CHAIN_POLICY, NF_DROP) + strz(CHAIN_TYPE, "filter")))
        batch += [_message(NEWRULE, ACK | CREATE | APPEND, strz(RULE_TABLE, new) +
                           strz(RULE_CHAIN, "input") + nest(RULE_EXPRESSIONS, *rule))
                  for rule in input_rules()]
        batch += [_message(DELTABLE, ACK, strz(TABLE_NAME, old)) for old in existing if old != new]
        batch.append((_BATCH_END, REQUEST, _BATCH))
        self._nl.exchange("firewall: nftables refused the ruleset", batch, bool)
        self.table = new
        self.fingerprint = self.current_fingerprint()

    def _dump(self, kind: int) -> list[dict[int, bytes]]:
        return self._nl.exchange("firewall: cannot read nftables state",
                                 [_message(kind, DUMP, b"")], lambda m: nlwire.attrs(m.payload[4:]))

    def _our_tables(self) -> list[str]:
        names = (nlwire.text(t.get(TABLE_NAME)) or "" for t in self._dump(GETTABLE))
        return [n for n in names if n.startswith(TABLE_PREFIX)]  # inet only: the dump's family

    def current_fingerprint(self) -> str:
        """A hash over our tables, chains (name, hook, policy, type) and rules (chain,
        expressions) as the kernel has them; attribute 1 of a chain or rule is its table."""
        tables = sorted(self._our_tables())
        parts = [repr(tables)]
        for kind, keys in ((GETCHAIN, (1, CHAIN_NAME, CHAIN_HOOK, CHAIN_POLICY, CHAIN_TYPE)),
                           (GETRULE, (1, RULE_CHAIN, RULE_EXPRESSIONS))):
            parts += [repr([o.get(k) for k in keys]) for o in self._dump(kind)
                      if nlwire.text(o.get(1)) in tables]
        return hashlib.blake2b("\n".join(sorted(parts)).encode(), digest_size=16).hexdigest()

    def check(self) -> bool:
        return self.fingerprint is not None and self.current_fingerprint() == self.fingerprint
