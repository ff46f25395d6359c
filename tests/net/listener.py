"""A process that listens on 0.0.0.0 (TCP and UDP echo): what the firewall must hide."""

from __future__ import annotations

import os
import select
import socket
import sys

port = int(sys.argv[1])
tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("0.0.0.0", port))
tcp.listen(16)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("0.0.0.0", port))
print(f"ready {os.getpid()}", flush=True)
while True:
    r, _, _ = select.select([tcp, udp], [], [])
    if tcp in r:
        conn, _ = tcp.accept()
        conn.sendall(b"hello\n")
        conn.close()
    if udp in r:
        data, peer = udp.recvfrom(2048)
        udp.sendto(data, peer)
