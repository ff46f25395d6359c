"""A scripted, hostile DHCP server for tests: `python -m tests.net.rogue_dhcp PLAN LOG`.

It runs inside a lab namespace, answers on one interface by broadcast, and
records every request it receives (one JSON object a line in LOG). The plan
(JSON, built with `plan()` and `reply()` below) lists "rounds": the n-th
DISCOVER it hears is answered from round n (the last round repeats), and a
REQUEST is answered from the round of the last DISCOVER (`acks`), or from
`renew` when it carries ciaddr (renewing, rebinding). Replies are built with
the node's own encoder, or given as raw bytes to send malformed ones.
"""

from __future__ import annotations

import ipaddress
import json
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from zosnode.net import dhcp_wire as w

Spec = dict[str, Any]
ip = ipaddress.IPv4Address


def reply(kind: str, yiaddr: str = "0.0.0.0", *, server: str = "10.77.0.1",
          mask: str | None = "255.255.255.0", routers: tuple[str, ...] = ("10.77.0.1",),
          dns: tuple[str, ...] = ("10.77.0.1",), lease: int | None = 120,
          extra: tuple[tuple[int, bytes], ...] = (), xid_delta: int = 0,
          chaddr: str | None = None, count: int = 1, truncate: int | None = None) -> Spec:
    """One reply: `kind` OFFER/ACK/NAK, options as the test wants them."""
    opts: list[tuple[int, bytes]] = [(53, bytes([w.MsgType[kind]])), (54, ip(server).packed)]
    if kind != "NAK":
        if mask is not None:
            opts.append((1, ip(mask).packed))
        if routers:
            opts.append((3, b"".join(ip(r).packed for r in routers)))
        if dns:
            opts.append((6, b"".join(ip(d).packed for d in dns)))
        if lease is not None:
            opts.append((51, lease.to_bytes(4, "big")))
    opts += extra
    return {"yiaddr": yiaddr if kind != "NAK" else "0.0.0.0",
            "options": [[c, v.hex()] for c, v in opts], "xid_delta": xid_delta,
            "chaddr": chaddr, "count": count, "truncate": truncate}


def long_option(code: int, value: bytes) -> tuple[tuple[int, bytes], ...]:
    """An option longer than 255 bytes, split as RFC 3396 allows."""
    return tuple((code, value[i:i + 255]) for i in range(0, len(value), 255))


def plan(interface: str, rounds: list[dict[str, list[Spec]]],
         renew: list[Spec] | None = None, server: str = "10.77.0.1") -> dict[str, Any]:
    return {"interface": interface, "server": server, "rounds": rounds, "renew": renew or []}


def _encode(spec: Spec, req: w.Message) -> bytes:
    chaddr = bytes.fromhex(spec["chaddr"]) if spec["chaddr"] else req.chaddr
    msg = w.Message(op=w.BOOTREPLY, xid=(req.xid + spec["xid_delta"]) % 2**32, chaddr=chaddr,
                    options=tuple((c, bytes.fromhex(v)) for c, v in spec["options"]),
                    yiaddr=spec["yiaddr"], flags=req.flags)
    data = w.encode(msg)
    return data[:spec["truncate"]] if spec["truncate"] is not None else data


def serve(plan_path: Path, log_path: Path) -> None:
    conf = json.loads(plan_path.read_text())
    rounds: list[dict[str, list[Spec]]] = conf["rounds"]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, conf["interface"].encode())
    sock.bind(("0.0.0.0", 67))
    discovers = 0
    with open(log_path, "a", buffering=1) as log:
        log.write(json.dumps({"event": "started"}) + "\n")
        while True:
            data = sock.recv(2048)
            try:
                req = w.decode(data)
            except w.PacketError as exc:
                log.write(json.dumps({"event": "garbage", "error": str(exc)}) + "\n")
                continue
            kind = req.msg_type
            entry = {"event": "received", "type": kind.name if kind else None,
                     "xid": req.xid, "chaddr": req.chaddr.hex(), "ciaddr": req.ciaddr,
                     "requested": req.addr(w.Opt.REQUESTED_IP),
                     "server_id": req.addr(w.Opt.SERVER_ID), "t": time.monotonic()}
            log.write(json.dumps(entry) + "\n")
            if kind is w.MsgType.DISCOVER:
                discovers += 1
                specs = rounds[min(discovers, len(rounds)) - 1].get("offers", [])
            elif kind is w.MsgType.REQUEST:
                if req.ciaddr != "0.0.0.0":
                    specs = conf["renew"]
                else:
                    specs = rounds[min(max(discovers, 1), len(rounds)) - 1].get("acks", [])
            else:
                continue
            for spec in specs:
                out = _encode(spec, req)
                for _ in range(spec["count"]):
                    sock.sendto(out, ("255.255.255.255", 68))


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(Path(sys.argv[1]), Path(sys.argv[2]))


if __name__ == "__main__":
    main()
