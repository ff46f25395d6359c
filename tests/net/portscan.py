"""A bounded TCP connect scan and UDP probe, run inside a neighbour namespace.

    python3 portscan.py HOST [--ports 1-65535] [--udp 53,123] [--window 1.0]

Prints JSON: TCP ports that accepted, that refused (RST: reachable but
closed), how many stayed silent (dropped), and UDP ports that answered with
data or an ICMP error. Sockets go out in batches with a short window each,
so a full scan of a dropping host ends in about 65535/batch windows.
"""

from __future__ import annotations

import argparse
import errno
import json
import resource
import select
import socket
import time


def tcp_scan(host: str, ports: list[int], batch: int, window: float) -> dict[str, object]:
    accepted: list[int] = []
    refused: list[int] = []
    silent = 0
    for start in range(0, len(ports), batch):
        chunk = ports[start:start + batch]
        ep = select.epoll()
        socks: dict[int, tuple[socket.socket, int]] = {}
        try:
            for port in chunk:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                rc = s.connect_ex((host, port))
                if rc not in (0, errno.EINPROGRESS):
                    refused.append(port) if rc == errno.ECONNREFUSED else None
                    s.close()
                    continue
                socks[s.fileno()] = (s, port)
                ep.register(s.fileno(), select.EPOLLOUT | select.EPOLLERR)
            deadline = time.monotonic() + window
            done: set[int] = set()
            while len(done) < len(socks) and time.monotonic() < deadline:
                for fd, _ev in ep.poll(max(deadline - time.monotonic(), 0)):
                    if fd in done:
                        continue
                    done.add(fd)
                    ep.unregister(fd)
                    s, port = socks[fd]
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err == 0:
                        accepted.append(port)
                    elif err == errno.ECONNREFUSED:
                        refused.append(port)
            silent += len(socks) - len(done)
        finally:
            for s, _ in socks.values():
                s.close()
            ep.close()
    return {"accepted": accepted, "refused": refused, "silent": silent}


def udp_probe(host: str, ports: list[int], window: float) -> dict[str, object]:
    answered: list[int] = []
    icmp: list[int] = []
    socks = []
    for port in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.connect((host, port))  # connected: ICMP port-unreachable surfaces as ECONNREFUSED
        s.send(b"probe\n")
        socks.append((s, port))
    deadline = time.monotonic() + window
    pending = list(socks)
    while pending and time.monotonic() < deadline:
        r, _, _ = select.select([s for s, _ in pending], [], [], 0.05)
        for s in r:
            port = dict(pending)[s]
            try:
                s.recv(2048)
                answered.append(port)
            except ConnectionRefusedError:
                icmp.append(port)
            pending = [(x, p) for x, p in pending if x is not s]
    for s, _ in socks:
        s.close()
    return {"answered": answered, "icmp_unreachable": icmp, "silent": len(pending)}


def parse_ports(spec: str) -> list[int]:
    out: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("host")
    p.add_argument("--ports", default="1-65535")
    p.add_argument("--udp", default="")
    p.add_argument("--batch", type=int, default=8192)
    p.add_argument("--window", type=float, default=1.0)
    a = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, a.batch + 256)), hard))
    t0 = time.monotonic()
    out: dict[str, object] = {"tcp": tcp_scan(a.host, parse_ports(a.ports), a.batch, a.window)}
    if a.udp:
        out["udp"] = udp_probe(a.host, parse_ports(a.udp), a.window)
    out["seconds"] = round(time.monotonic() - t0, 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
