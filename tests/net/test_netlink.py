"""The node's netlink sockets come without pyroute2's package facade.

`import pyroute2` imports every protocol it speaks (NDB and sqlite3 among
them); the node opens its rtnetlink and nftables sockets through
`zosnode.net.netlink`, which imports only those two. Run for real inside a
namespace the test made, in a fresh interpreter.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.lab.netns import netns, nsexec

PROBE = """
import json, sys
from zosnode.net.firewall import Firewall
from zosnode.net.links import Links
links, fw = Links(), Firewall()
nics = [n.name for n in links.nics()]
links.close(); fw.close()
lean = sorted(m for m in sys.modules if m.startswith(("pyroute2", "sqlite3")))
rss = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS"))
from pyroute2 import NetNS  # the facade still works for whoever wants it
print(json.dumps({"modules": lean, "nics": nics, "rss_kib": rss,
                  "facade": NetNS.__name__,
                  "after": "sqlite3" in sys.modules}))
"""


def test_node_sockets_import_no_facade() -> None:
    with netns("znl") as ns:
        proc = subprocess.run(nsexec(ns, sys.executable, "-c", PROBE), capture_output=True,
                              text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    print(f"netlink sockets: {len(got['modules'])} pyroute2 modules, RSS {got['rss_kib']} KiB")
    assert got["nics"] == []  # only lo in a fresh namespace
    assert not [m for m in got["modules"] if m.startswith(("sqlite3", "pyroute2.ndb",
                                                             "pyroute2.ipdb"))]
    assert "pyroute2.iproute.linux" in got["modules"]
    assert "pyroute2.nftables.main" in got["modules"]
    assert got["facade"] == "NetNS" and got["after"]  # the facade ran on demand


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
