"""The node's own netlink (zosnode.net.netlink, nlwire): links, addresses, routes and the
nftables ruleset, for real inside a namespace the test made, in a fresh interpreter. No
pyroute2 (nor the asyncio, multiprocessing and unittest it imported) is loaded on the way.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.lab.netns import netns, nsexec

PROBE = """
import json, socket, subprocess, sys
from zosnode.net.errors import NetSystemError
from zosnode.net.firewall import Firewall
from zosnode.net.links import Links
def ip(*argv):
    return subprocess.run(["ip", *argv], check=True, capture_output=True, text=True).stdout
links, fw = Links(), Firewall()
before = [n.name for n in links.nics()]
ip("link", "add", "v0", "type", "veth", "peer", "name", "v1")
ip("link", "add", "br9", "type", "bridge")  # virtual: never a NIC
nics = {n.name: n for n in links.nics()}
v0 = nics["v0"]
mac = open("/sys/class/net/v0/address").read().strip()
carrier_down = links.carrier(v0)
links.set_up(v0); links.set_up(nics["v1"])
links.add_address(v0, "10.9.0.2", 24)
links.add_address(v0, "10.9.0.2", 24)  # replace: no error
links.set_route(v0, "10.8.0.0/16", None, 50)
links.set_route(v0, "0.0.0.0/0", "10.9.0.1", 100)
routes = ip("-4", "route", "show", "dev", "v0")
held = links.addresses(v0, socket.AF_INET)
try:
    links.set_route(v0, "10.7.0.0/16", "10.99.0.1", 5)
    refused = None
except NetSystemError as exc:
    refused = str(exc)
links.del_route(v0, "10.8.0.0/16", 50); links.del_route(v0, "10.8.0.0/16", 50)  # gone: no error
links.del_route(v0, "0.0.0.0/0", 100)
links.del_address(v0, "10.9.0.2", 24); links.del_address(v0, "10.9.0.2", 24)
fw.apply()
after = ip("-4", "route", "show", "dev", "v0")
links.close(); fw.close()
print(json.dumps({"before": before, "nics": sorted(nics), "mac": [v0.mac.hex(), mac],
                  "carrier_down": carrier_down, "routes": routes, "held": held,
                  "refused": refused, "after": after,
                  "addresses_after": ip("-4", "addr", "show", "dev", "v0"),
                  "modules": sorted(m for m in sys.modules
                                    if m.split(".")[0] in ("pyroute2", "asyncio", "multiprocessing",
                                                           "unittest", "sqlite3"))}))
"""


def test_links_and_routes_through_our_netlink() -> None:
    with netns("znl") as ns:
        proc = subprocess.run(nsexec(ns, sys.executable, "-c", PROBE), capture_output=True,
                              text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["before"] == []  # only lo in a fresh namespace
    assert got["nics"] == ["v0", "v1"]  # the bridge is not a NIC
    assert got["mac"][0] == got["mac"][1].replace(":", "")
    assert got["carrier_down"] is False
    assert "default via 10.9.0.1 proto static metric 100" in got["routes"]
    assert "10.8.0.0/16 proto static scope link metric 50" in got["routes"]
    assert got["held"] == [["10.9.0.2", 24]]
    unreachable = "netlink: route 10.7.0.0/16 via 10.99.0.1 on v0: Network is unreachable"
    assert got["refused"] == unreachable
    assert got["after"] == "" and "inet " not in got["addresses_after"]
    assert got["modules"] == []


DRIFT = """
import json, subprocess
from zosnode.net.firewall import Firewall
def nft(*argv): subprocess.run(["nft", *argv], check=True)
fw, seen = Firewall(), []
fw.apply(); seen.append(fw.check())
nft("add", "table", "inet", "other")  # another table: not drift (ours stays final)
nft("add", "chain", "inet", "other", "c", "{ type filter hook input priority 0; policy accept; }")
seen.append(fw.check())
nft("add", "rule", "inet", fw.table, "input", "tcp", "dport", "22", "accept")
seen.append(fw.check())
fw.apply(); seen.append(fw.check())
nft("chain", "inet", fw.table, "input", "{ policy accept; }")
seen.append(fw.check())
fw.apply(); nft("delete", "table", "inet", fw.table)
seen.append(fw.check())
fw.close()
print(json.dumps(seen))
"""


def test_firewall_drift_is_seen_in_our_table_only() -> None:
    if shutil.which("nft") is None:
        pytest.skip("needs the nft command (package nftables) to change the ruleset")
    with netns("zfw") as ns:
        proc = subprocess.run(nsexec(ns, sys.executable, "-c", DRIFT), capture_output=True,
                              text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # applied, other table added, rule added to ours, re-applied, policy changed, ours deleted
    assert json.loads(proc.stdout) == [True, True, False, True, False, False]
