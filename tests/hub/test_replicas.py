"""Three hub replicas on one SeaweedFS bucket and one PostgreSQL registry.

SeaweedFS and the replicas run in a network namespace the test creates
(loopback only); PostgreSQL is reached through its Unix socket, which the
namespace shares with the host. The clients run in the namespace too
(`tests/hub/replica_driver.py`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hub.replica_driver import PUBLISHER, ROUNDS
from tests.lab.netns import nsexec
from tests.lab.postgres import Postgres, postgres
from tests.lab.seaweed import Seaweed, seaweed

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PORTS = (7071, 7072, 7073)


@pytest.fixture(scope="module")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    with seaweed(tmp_path_factory.mktemp("weed")) as sw:
        yield sw


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    with postgres() as server:
        yield server


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    out["PYTHONPATH"] = str(REPO)
    return out


def in_ns(sw: Seaweed, *argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(nsexec(sw.ns, *argv), capture_output=True, text=True, env=env(),
                          cwd=REPO, timeout=timeout)


def wait_up(sw: Seaweed, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    end = time.monotonic() + 30
    while True:
        out = in_ns(sw, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                    "--max-time", "2", f"http://127.0.0.1:{port}/api/v1/channels")
        if out.stdout == "200":
            return
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < end, f"replica {port} did not come up"
        time.sleep(0.2)


def test_conditional_put_on_seaweedfs(weed: Seaweed) -> None:
    # A measurement, recorded in docs/operations.md: does this SeaweedFS
    # honour If-None-Match / If-Match on PUT? (412 if it does.)
    out = in_ns(weed, sys.executable, "-m", "tests.hub.replica_driver", "condput",
                weed.endpoint)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    print(f"SeaweedFS conditional PUT: {result}")
    assert result["first_put"] == 200


def test_three_replicas_publish_race(weed: Seaweed, pg: Postgres, tmp_path: Path) -> None:
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    try:
        for port in PORTS:
            if procs:  # the first creates the bucket (SeaweedFS 500s a create race)
                wait_up(weed, PORTS[0], procs[0], logs[0])
            log = tmp_path / f"hub{port}.log"
            logs.append(log)
            with open(log, "wb") as f:
                procs.append(subprocess.Popen(
                    nsexec(weed.ns, sys.executable, "-m", "zosnode", "hub", "serve",
                           "--store", "s3://zoshub/replicas", "--s3-endpoint", weed.endpoint,
                           "--listen", f"127.0.0.1:{port}", "--registry", pg.url,
                           "--publisher", PUBLISHER.verify_key.encode().hex()),
                    stdout=f, stderr=subprocess.STDOUT, env=env(), cwd=REPO))
        for port, proc, log in zip(PORTS, procs, logs, strict=True):
            wait_up(weed, port, proc, log)
        out = in_ns(weed, sys.executable, "-m", "tests.hub.replica_driver", "race",
                    *map(str, PORTS))
        assert out.returncode == 0, out.stderr
        rounds = json.loads(out.stdout)["rounds"]
        assert len(rounds) == ROUNDS
        for r in rounds:
            assert r["statuses"] == [201, 409], r
            assert r["channel_is_winner"] and r["record_is_winner"], r
        took = sorted(r["seconds"] for r in rounds)
        print(f"{ROUNDS} races: each exactly one 201 and one 409; a race took "
              f"median {took[len(took) // 2]:.3f} s, max {took[-1]:.3f} s")
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    for log in logs:
        text = log.read_text()
        assert "PostgreSQL" in text and "stopped" in text, text
