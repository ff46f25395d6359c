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


LB_PORT = 7080
STORM_PORTS = (7081, 7082, 7083)
LB_CONFIG = """\
daemon off;
master_process on;
worker_processes 1;
user root;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 2048; }}
http {{
    access_log off;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    upstream zoshub {{
        {servers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://zoshub;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_next_upstream error timeout http_502 http_503 non_idempotent;
            proxy_next_upstream_tries 3;
            proxy_connect_timeout 2s;
            client_max_body_size 64m;
        }}
        location ~ /\\. {{ return 404; }}
    }}
}}
"""


def test_boot_storm_through_nginx_survives_a_killed_replica(
        weed: Seaweed, pg: Postgres, tmp_path: Path) -> None:
    from tests.hub.releases import make_image

    nginx_bin = "/usr/sbin/nginx"
    if not Path(nginx_bin).exists():
        pytest.skip("needs nginx (apt nginx-light)")
    db = "storm"
    pg.psql(f"CREATE DATABASE {db}")
    registry = pg.url.replace("/postgres?", f"/{db}?")
    image = make_image(tmp_path, files=8)
    work = tmp_path / "nginx"
    work.mkdir()
    (work / "nginx.conf").write_text(LB_CONFIG.format(
        work=work, port=LB_PORT,
        servers="\n        ".join(f"server 127.0.0.1:{p} max_fails=1 fail_timeout=30s;"
                                  for p in STORM_PORTS)))
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    lb = None
    try:
        for port in STORM_PORTS:
            if procs:
                wait_up(weed, STORM_PORTS[0], procs[0], logs[0])
            log = tmp_path / f"hub{port}.log"
            logs.append(log)
            with open(log, "wb") as f:
                procs.append(subprocess.Popen(
                    nsexec(weed.ns, sys.executable, "-m", "zosnode", "hub", "serve",
                           "--store", "s3://zoshub/storm", "--s3-endpoint", weed.endpoint,
                           "--listen", f"127.0.0.1:{port}", "--registry", registry,
                           "--publisher", PUBLISHER.verify_key.encode().hex()),
                    stdout=f, stderr=subprocess.STDOUT, env=env(), cwd=REPO))
        for port, proc, log in zip(STORM_PORTS, procs, logs, strict=True):
            wait_up(weed, port, proc, log)
        lb = subprocess.Popen(nsexec(weed.ns, nginx_bin, "-c", str(work / "nginx.conf"),
                                     "-p", str(work), "-e", str(work / "error.log")),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        driver = subprocess.Popen(
            nsexec(weed.ns, sys.executable, "-m", "tests.hub.replica_driver", "storm",
                   str(LB_PORT), str(image.store.path), "120", "16"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(), cwd=REPO, text=True)
        assert driver.stdout is not None
        line = driver.stdout.readline()
        assert line.strip() == "STORM START", line + (driver.stderr.read() if driver.stderr
                                                       else "")
        time.sleep(1.0)
        procs[1].kill()  # SIGKILL, mid-storm
        procs[1].wait()
        out, err = driver.communicate(timeout=600)
        assert driver.returncode == 0, err
        result = json.loads(out.strip().splitlines()[-1])
        print(f"boot storm through nginx, replica {STORM_PORTS[1]} SIGKILLed after 1 s: "
              f"{result}")
        assert result["failed"] == 0, result
        assert result["acked_nodes"] == 120 and result["lost_count"] == 0, result
        # The kill was felt: nginx saw the dead replica fail and went on.
        felt = [line for line in (work / "error.log").read_text().splitlines()
                if f"127.0.0.1:{STORM_PORTS[1]}" in line]
        print(f"nginx error.log lines about the killed replica: {len(felt)}")
        assert felt
    finally:
        if lb is not None:
            lb.terminate()
            lb.wait(timeout=10)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


OUTAGE_S = float(os.environ.get("ZOS_PG_OUTAGE_S", "30"))
OUTAGE_PORTS = (7091, 7092, 7093)


def test_replicas_serve_through_a_postgres_outage(weed: Seaweed, pg: Postgres,
                                                  tmp_path: Path) -> None:
    from tests.hub.releases import make_image, signed_manifest, signed_root
    from zosnode import layout
    from zosnode.trust.keyfile import HEADER

    pg.psql("CREATE DATABASE outage")
    registry = pg.url.replace("/postgres?", "/outage?")
    image = make_image(tmp_path, files=4)
    keyfile = tmp_path / "pub.key"
    keyfile.write_text(f"{HEADER}\n{bytes(PUBLISHER).hex()}\n")
    keyfile.chmod(0o600)
    from tests.hub.replica_driver import ROOT_KEYS

    (tmp_path / "root1").write_bytes(signed_root(1, ROOT_KEYS, ROOT_KEYS, 1))
    (tmp_path / "manifest").write_bytes(signed_manifest(
        "stable", 1, ROOT_KEYS, ((image.flist_id, len(image.flist_bytes)),)))
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    try:
        for port in OUTAGE_PORTS:
            if procs:
                wait_up(weed, OUTAGE_PORTS[0], procs[0], logs[0])
            log = tmp_path / f"hub{port}.log"
            logs.append(log)
            with open(log, "wb") as f:
                procs.append(subprocess.Popen(
                    nsexec(weed.ns, sys.executable, "-m", "zosnode", "hub", "serve",
                           "--store", "s3://zoshub/outage", "--s3-endpoint", weed.endpoint,
                           "--listen", f"127.0.0.1:{port}", "--registry", registry,
                           "--publisher", PUBLISHER.verify_key.encode().hex()),
                    stdout=f, stderr=subprocess.STDOUT, env=env(), cwd=REPO))
        for port, proc, log in zip(OUTAGE_PORTS, procs, logs, strict=True):
            wait_up(weed, port, proc, log)
        out = in_ns(weed, sys.executable, "-m", "zosnode", "hub", "push", "--hub",
                    f"http://127.0.0.1:{OUTAGE_PORTS[0]}", "--key", str(keyfile),
                    "--store", str(image.store.path), "--root", str(tmp_path / "root1"),
                    "--manifest", str(tmp_path / "manifest"))
        assert out.returncode == 0, out.stderr
        # A boot file, put in the bucket by the operator (not a publication).
        out = in_ns(weed, "curl", "-s", "-f", "-X", "PUT", "--data-binary", "kernel bytes",
                    f"{weed.endpoint}/zoshub/outage/boot/stable/vmlinuz")
        assert out.returncode == 0, out.stderr
        paths = ["/boot/stable/vmlinuz", "/channels/stable/manifest",
                 f"/{layout.flist_path(image.flist_id)}",
                 *(f"/{layout.block_path(b)}" for b in image.block_ids)]
        ports = ",".join(map(str, OUTAGE_PORTS))
        now = int(time.time())

        def probe(sent_at: int) -> dict[str, object]:
            res = in_ns(weed, sys.executable, "-m", "tests.hub.replica_driver", "probe",
                        str(sent_at), ports, ",".join(paths))
            assert res.returncode == 0, res.stderr
            doc: dict[str, object] = json.loads(res.stdout)
            return doc

        before = probe(now)
        assert all(v in ([200], 204) for v in before.values()), before
        pg.stop()
        t0 = time.monotonic()
        rounds = 0
        try:
            while time.monotonic() - t0 < OUTAGE_S:
                rounds += 1
                during = probe(now + 10 * rounds)
                for port in OUTAGE_PORTS:
                    assert during[f"{port} get"] == [200], during
                    assert during[f"{port} heartbeat"] == 503, during
                time.sleep(1)
        finally:
            pg.start()
        print(f"PostgreSQL stopped {time.monotonic() - t0:.1f} s: {rounds} probes of "
              f"{len(paths)} objects x 3 replicas all 200, heartbeats all 503")
        end = time.monotonic() + 30
        while True:
            after = probe(now + 100_000 + int(time.monotonic() - t0) * 10)
            if all(after[f"{p} heartbeat"] == 204 for p in OUTAGE_PORTS):
                break
            assert time.monotonic() < end, after
            time.sleep(1)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
