"""A normal lease and its renewals from ISC Kea, a server written apart from dnsmasq."""

from __future__ import annotations

import re
from collections.abc import Callable

from tests.lab.kea import kea, kea_conf, require_kea
from tests.net.conftest import Lan, NodeProc, addresses, default_routes

HUB = "zos.hub=http://10.77.0.1:8080 zos.farm=f1"
Start = Callable[..., NodeProc]


def test_lease_and_renewals_from_kea(lan: Lan, node_ns: str, start_node: Start) -> None:
    require_kea()
    lan.plug(node_ns, "eth0")
    conf = kea_conf(lan.tmp / "kea.json", lan.bridge, "10.77.0.0/24",
                    "10.77.0.100 - 10.77.0.149", "10.77.0.1", lease_s=20, renew_s=3,
                    rebind_s=15)
    log = lan.tmp / "kea.log"
    with kea(lan.ns, conf, log):
        node = start_node(node_ns, "--cmdline", HUB, "--network-only")
        _, t_up, _ = node.wait_line("network up on eth0", 30)
        (addr,) = addresses(node_ns, "eth0")
        ip = addr.split("/")[0]
        assert 100 <= int(ip.split(".")[3]) <= 149 and addr.endswith("/24")
        assert "default via 10.77.0.1 dev eth0" in default_routes(node_ns)
        resolv = (lan.tmp / "resolv.conf").read_text()
        assert "nameserver 10.77.0.1" in resolv and "search lab.example" in resolv
        mark = 0
        for n in range(2):  # T1 is 3 s: two renewals within a bounded time
            i, t, _ = node.wait_line("lease renewed for 20s", 10, after=mark)
            mark = i + 1
            print(f"renewal {n + 1} at +{t - t_up:.1f}s")
        text = log.read_text(errors="replace")
    assert node.proc.poll() is None
    assert addresses(node_ns, "eth0") == [addr]  # kept through the renewals
    allocs = re.findall(rf"DHCP4_LEASE_ALLOC .*tid=(0x[0-9a-f]+): lease {re.escape(ip)} ", text)
    assert len(allocs) >= 3 and len(set(allocs)) == len(allocs), text  # a new xid each time
