"""The node registry in a database: SQLite (default) and a real PostgreSQL.

The same backend checks run on both; then real `hub serve` processes show the
registry surviving a restart, and heartbeats refused with 503 (while boot
files, manifests, flists and blocks are still served) while PostgreSQL is
stopped, and recorded again once it is back.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hub.conftest import REPO, put_block, spawn_hub
from tests.hub.releases import key
from tests.lab.postgres import Postgres, postgres
from zosnode.hub.registry import PublishLockBusy, RegistryUnavailable, RegistryUsageError
from zosnode.hub.registry_db import (
    MIGRATIONS,
    SCHEMA_VERSION,
    PostgresRegistry,
    SqliteRegistry,
    open_backend,
)
from zosnode.wire.heartbeat import Heartbeat, ServiceState, encode_signed


def heartbeat(name: str, release: int, sent_at: int, *, state: str = "running",
              failed: int | None = None) -> Heartbeat:
    return Heartbeat(
        node_id=key(name).verify_key.encode().hex(), farm="farm-1", channel="stable",
        release=release, agent_version="0.1.0", sent_at=sent_at, uptime_s=10,
        services=(ServiceState("web", state),), failed_release=failed)


def signed(name: str, release: int, sent_at: int) -> bytes:
    return encode_signed(heartbeat(name, release, sent_at), key(name))


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    with postgres() as server:
        yield server


_dbs = iter(range(1000))
AnyDb = SqliteRegistry | PostgresRegistry


def fresh_pg_db(pg: Postgres) -> str:
    name = f"reg{next(_dbs)}_{os.getpid()}"
    pg.psql(f"CREATE DATABASE {name}")
    return pg.url.replace("/postgres?", f"/{name}?")


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AnyDb]:
    db: AnyDb
    if request.param == "sqlite":
        db = SqliteRegistry(str(tmp_path / "reg.sqlite3"))
    else:
        db = PostgresRegistry(fresh_pg_db(request.getfixturevalue("pg")))
    assert db.migrate() == SCHEMA_VERSION
    try:
        yield db
    finally:
        db.close()


def test_latest_state_history_and_summary(backend: AnyDb) -> None:
    assert backend.migrate() == SCHEMA_VERSION  # idempotent
    assert backend.record(heartbeat("a", 1, 1000), 5000, 10) is None
    assert backend.record(heartbeat("b", 1, 1000, state="starting"), 5000, 10) is None
    assert backend.record(heartbeat("a", 2, 1100, failed=3), 6000, 10) is None
    # Not newer: a replay cannot roll a node back, nor can an equal sent_at.
    assert backend.record(heartbeat("a", 1, 1000), 6001, 10) is not None
    assert backend.record(heartbeat("a", 5, 1100), 6001, 10) is not None
    nodes = {r.heartbeat.node_id: r for r in backend.nodes()}
    a = key("a").verify_key.encode().hex()
    assert nodes[a].heartbeat.release == 2 and nodes[a].received_at == 6000
    s = backend.summary(stale_before=5500)
    assert s.count == 2 and s.stale == 1
    assert s.by_release == {("stable", 1): 1, ("stable", 2): 1}
    assert s.by_state == {"degraded": 1, "starting": 1}
    kinds = [(e.kind, e.detail) for e in backend.history(a, 10)]
    assert kinds == [("state", "degraded"), ("failure", "stable 3"), ("release", "stable 2"),
                     ("state", "ready"), ("release", "stable 1")]
    # A full registry refuses new nodes, not known ones.
    assert backend.record(heartbeat("c", 1, 1000), 6000, 2) == "node registry is full"
    assert backend.record(heartbeat("b", 1, 1200), 6000, 2) is None
    # History is pruned by age; latest states are kept.
    assert backend.prune(5500) == 4  # a and b: release and state at 5000
    assert len(backend.history(a, 10)) == 3 and len(backend.nodes()) == 2


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "r.sqlite3")
    db = SqliteRegistry(path)
    db.migrate()
    with db.tx(write=True) as cur:
        cur.execute("INSERT INTO schema_migrations VALUES (?, 0)", (SCHEMA_VERSION + 1,))
    with pytest.raises(RegistryUsageError, match="newer than this hub knows"):
        db.migrate()


def test_concurrent_migrations_on_postgres(pg: Postgres) -> None:
    url = fresh_pg_db(pg)
    results: list[object] = []

    def start() -> None:
        db = PostgresRegistry(url)
        try:
            results.append(db.migrate())
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            results.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [SCHEMA_VERSION] * 6
    db = PostgresRegistry(url)
    with db.tx(write=False) as cur:
        cur.execute("SELECT version FROM schema_migrations ORDER BY version")
        assert cur.fetchall() == [(v,) for v, _ in MIGRATIONS]  # each applied once
    db.close()


def test_publish_lock_is_exclusive(backend: AnyDb) -> None:
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with backend.publish_lock(5):
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    assert held.wait(10)
    other = (SqliteRegistry(backend.path) if isinstance(backend, SqliteRegistry)
             else PostgresRegistry(backend.url))  # another replica's
    try:
        with pytest.raises(PublishLockBusy):
            with other.publish_lock(0.3):
                pass
        release.set()
        t.join(10)
        with other.publish_lock(5):
            pass
    finally:
        release.set()
        other.close()


def test_registry_url_errors(tmp_path: Path) -> None:
    with pytest.raises(RegistryUsageError, match="expected postgresql"):
        open_backend("mysql://x", None)
    assert isinstance(open_backend(None, str(tmp_path)), SqliteRegistry)
    assert (tmp_path / ".hub" / "registry.sqlite3").exists()
    out = subprocess.run([sys.executable, "-m", "zosnode", "hub", "serve", "--data",
                          str(tmp_path), "--registry", "mysql://x"],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    # An unreachable PostgreSQL at start is one line too.
    bad = PostgresRegistry(f"postgresql://pg@/x?host={tmp_path}")
    with pytest.raises(RegistryUnavailable):
        bad.migrate()


def request(port: int, method: str, path: str, body: bytes | None = None
            ) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    conn.request(method, path, body=body)
    r = conn.getresponse()
    out = r.read()
    conn.close()
    return r.status, out


@pytest.fixture
def fixtures(request: pytest.FixtureRequest) -> pytest.FixtureRequest:
    return request


def hub_nodes(port: int) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-m", "zosnode", "hub", "nodes", "--hub",
                          f"http://127.0.0.1:{port}", "--json"],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    doc: dict[str, object] = json.loads(out.stdout)
    return doc


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_registry_survives_hub_restart(kind: str, tmp_path: Path,
                                       fixtures: pytest.FixtureRequest) -> None:
    args: tuple[str, ...] = ()
    if kind == "postgresql":
        args = ("--registry", fresh_pg_db(fixtures.getfixturevalue("pg")))
    data = tmp_path / "data"
    now = int(time.time())
    names = [f"node-{i}" for i in range(25)]
    hub = spawn_hub(data, tmp_path / "hub1.log", *args)
    try:
        for i, name in enumerate(names):
            assert request_hb(hub.port, name, 1 + i % 2, now) == 204
    finally:
        assert hub.stop() == 0, hub.log_text()
    hub = spawn_hub(data, tmp_path / "hub2.log", *args)
    try:
        doc = hub_nodes(hub.port)  # at once, before any new heartbeat
        assert doc["count"] == 25
        listed = {n["node_id"] for n in doc["nodes"]}  # type: ignore[attr-defined]
        assert listed == {key(n).verify_key.encode().hex() for n in names}
        _, metrics = request(hub.port, "GET", "/metrics")
        assert b"zos_hub_nodes 25\n" in metrics
        assert b'zos_hub_nodes_by_release{channel="stable",release="2"} 12' in metrics
        # The registry file is in the data directory, never served.
        if kind == "sqlite":
            assert (data / ".hub" / "registry.sqlite3").is_file()
            assert request(hub.port, "GET", "/.hub/registry.sqlite3")[0] == 404
        # The kept sent_at survived too: a replay is still refused.
        assert request_hb(hub.port, names[0], 1, now) == 409
        assert ("PostgreSQL" if kind == "postgresql" else "SQLite") in hub.log_text()
    finally:
        assert hub.stop() == 0, hub.log_text()


def request_hb(port: int, name: str, release: int, sent_at: int) -> int:
    return request(port, "POST", "/api/v1/heartbeat", signed(name, release, sent_at))[0]


OUTAGE_S = float(os.environ.get("ZOS_PG_OUTAGE_S", "30"))


@pytest.mark.slow
def test_postgres_outage_heartbeats_503_data_still_served(pg: Postgres,
                                                          tmp_path: Path) -> None:
    data = tmp_path / "data"
    block = put_block(data, os.urandom(5000))
    (data / "boot/stable").mkdir(parents=True)
    (data / "boot/stable/vmlinuz").write_bytes(b"kernel" * 100)
    (data / "flists").mkdir(exist_ok=True)
    (data / "flists" / block).write_bytes(b"")  # served as is: the hub checks on publish
    (data / "channels/stable/releases").mkdir(parents=True)
    (data / "channels/stable/manifest").write_bytes(b"signed manifest bytes")
    paths = [f"/blocks/{block[:2]}/{block}", "/boot/stable/vmlinuz",
             "/channels/stable/manifest", f"/flists/{block}"]
    hub = spawn_hub(data, tmp_path / "hub.log", "--registry", fresh_pg_db(pg))
    now = int(time.time())
    try:
        assert request_hb(hub.port, "n1", 1, now) == 204
        pg.stop()
        t0 = time.monotonic()
        try:
            statuses: list[int] = []
            while time.monotonic() - t0 < OUTAGE_S:
                for p in paths:
                    assert request(hub.port, "GET", p)[0] == 200, p
                statuses.append(request_hb(hub.port, "n1", 1, now + len(statuses) + 1))
                assert request(hub.port, "GET", "/api/v1/nodes")[0] == 503
                _, metrics = request(hub.port, "GET", "/metrics")
                assert b"zos_hub_registry_up 0" in metrics
                time.sleep(1)
        finally:
            pg.start()
        print(f"outage {time.monotonic() - t0:.1f} s: {len(statuses)} heartbeats, "
              f"statuses {sorted(set(statuses))}")
        assert set(statuses) == {503}
        # Back: the next heartbeat is recorded (the pool reconnects).
        end = time.monotonic() + 20
        while (code := request_hb(hub.port, "n2", 1, now)) != 204:
            assert code == 503 and time.monotonic() < end
            time.sleep(0.5)
        assert request_hb(hub.port, "n1", 2, now + 10_000) == 204
        doc = hub_nodes(hub.port)
        assert doc["count"] == 2
        assert {n["release"] for n in doc["nodes"]} == {1, 2}  # type: ignore[attr-defined]
    finally:
        assert hub.stop() == 0, hub.log_text()


def test_static_mirror_config_hides_the_registry(tmp_path: Path) -> None:
    # The nginx rule docs/operations.md gives for serving a data directory.
    from tests.lab.nginx import nginx

    data = tmp_path / "data"
    db = SqliteRegistry(str(data / ".hub" / "registry.sqlite3"))
    db.migrate()
    db.close()
    block = put_block(data, b"served")
    with nginx(data, tmp_path / "nginx") as mirror:
        assert request(mirror.port, "GET", f"/blocks/{block[:2]}/{block}") == (200, b"served")
        assert request(mirror.port, "GET", "/.hub/registry.sqlite3")[0] == 404


def test_node_state_and_history_events_are_pure() -> None:
    from zosnode.hub.registry import events_for, node_state

    assert node_state(heartbeat("x", 0, 1)) == "booting"
    assert node_state(heartbeat("x", 1, 1)) == "ready"
    assert node_state(heartbeat("x", 1, 1, state="backoff")) == "starting"
    assert node_state(heartbeat("x", 1, 1, state="failed")) == "failed"
    assert node_state(heartbeat("x", 2, 1, failed=3)) == "degraded"
    assert node_state(heartbeat("x", 3, 1, failed=3)) == "ready"  # an old failure
    same = heartbeat("x", 1, 1)
    assert events_for(same, heartbeat("x", 1, 2), 9) == []
    assert [e.kind for e in events_for(same, heartbeat("x", 2, 2, failed=3), 9)] == [
        "release", "failure", "state"]


async def test_a_slow_database_does_not_block_the_event_loop(tmp_path: Path) -> None:
    # Registry calls run in worker threads: while one is stuck for 1 s, the
    # loop goes on serving (here: a ticker).
    import trio

    from zosnode.hub.registry import Registry

    class Slow(SqliteRegistry):
        def record(self, hb: Heartbeat, now: int, max_nodes: int) -> str | None:
            time.sleep(1.0)
            return super().record(hb, now, max_nodes)

    reg = Registry(Slow(str(tmp_path / "r.sqlite3")))
    await reg.migrate()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await trio.sleep(0.05)
            ticks += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        assert await reg.record(heartbeat("slow", 1, 1), 5) is None
        nursery.cancel_scope.cancel()
    print(f"ticks during a 1 s database call: {ticks}")
    assert ticks >= 10
    await reg.aclose()


def test_the_whole_heartbeat_is_kept_and_listed(tmp_path: Path) -> None:
    """The newer fields survive the database and the JSON API shows every field."""
    from zosnode.hub.registry import Registry
    from zosnode.wire.heartbeat import CacheReport, DiskReport, HardwareReport, RefusalReport

    db = SqliteRegistry(str(tmp_path / "reg.sqlite3"))
    db.migrate()
    rich = Heartbeat(**{**heartbeat("rich", 1, 100).__dict__,
                        "identity_source": "disk", "secure_boot": "on",
                        "hardware": HardwareReport(2, 1 << 30, (
                            DiskReport("vda", 1 << 26, "QEMU", "cache"),)),
                        "cache": CacheReport("disk", 1 << 26, 1 << 20, 3, 1, 1),
                        "refusals": (RefusalReport("manifest", "expired", 90),)})
    plain = heartbeat("plain", 1, 100)
    for hb in (rich, plain):
        assert db.record(hb, 101, 10) is None
    stored = {r.heartbeat.node_id: r.heartbeat for r in db.nodes()}
    assert stored[rich.node_id] == rich and stored[plain.node_id] == plain
    listed = {n["node_id"]: n for n in Registry(db).to_json(102)["nodes"]}
    r, p = listed[rich.node_id], listed[plain.node_id]
    assert r["identity_source"] == "disk" and r["secure_boot"] == "on"
    assert r["hardware"]["disks"] == [{"name": "vda", "size_bytes": 1 << 26, "model": "QEMU",
                                       "role": "cache"}]
    assert r["cache"]["refetched"] == 1 and r["cache"]["hit_rate"] == 0.75
    assert r["refusals"] == [{"kind": "manifest", "reason": "expired", "at": 90}]
    assert (p["identity_source"], p["hardware"], p["cache"], p["refusals"]) == (
        "unknown", None, None, [])
    db.close()
