"""Every socket listening on a non-loopback address, with its pids: the firewall drops inbound
traffic, but a process that would accept it is a mistake to see before it matters."""

import glob
import ipaddress
import os
from dataclasses import dataclass, replace
from pathlib import Path

TCP_LISTEN = 0x0A
UDP_UNCONNECTED = 0x07  # TCP_CLOSE: how a bound, unconnected UDP socket shows
PROTOCOLS = ("tcp", "tcp6", "udp", "udp6")


@dataclass(frozen=True)
class Finding:
    proto: str
    address: str
    port: int
    inode: int
    pids: tuple[int, ...] = ()

    def describe(self) -> str:
        who = ",".join(map(str, self.pids)) or "unknown"
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.proto} {host}:{self.port} (socket inode {self.inode}, pid {who})"


def _address(hexaddr: str) -> str:
    raw = bytes.fromhex(hexaddr)
    # The kernel prints each 32-bit word in host (little-endian) order.
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    addr = ipaddress.ip_address(words)  # ValueError unless 4 or 16 bytes
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def parse(proto: str, text: str) -> list[Finding]:
    """Pure: sockets in one /proc/net table that listen on a non-loopback address."""
    want = TCP_LISTEN if proto.startswith("tcp") else UDP_UNCONNECTED
    out: list[Finding] = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        try:
            local_hex, port_hex = fields[1].split(":")
            remote_port = int(fields[2].split(":")[1], 16)
            state = int(fields[3], 16)
            found = Finding(proto, _address(local_hex), int(port_hex, 16), int(fields[9]))
        except (ValueError, IndexError):  # not a socket line: skipped
            continue
        loopback = ipaddress.ip_address(found.address).is_loopback
        if state == want and not loopback and (proto.startswith("tcp") or remote_port == 0):
            out.append(found)
    return out


def _owners() -> dict[int, set[int]]:
    owners: dict[int, set[int]] = {}
    # glob skips a directory it cannot read: a process that exits mid-scan is no error.
    for fd in glob.glob("/proc/[0-9]*/fd/*"):
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            owners.setdefault(int(target[8:-1]), set()).add(int(fd.split("/")[-3]))
    return owners


def scan() -> list[Finding]:
    found: list[Finding] = []
    for proto in PROTOCOLS:
        try:
            text = Path("/proc/net", proto).read_text()
        except OSError:
            continue  # e.g. no IPv6 in this kernel
        found += parse(proto, text)
    if not found:
        return found
    owners = _owners()
    return [replace(f, pids=tuple(sorted(owners.get(f.inode, ())))) for f in found]
