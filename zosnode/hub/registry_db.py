"""The registry's two databases: SQLite (embedded default) and PostgreSQL.

One schema, written once in portable SQL, with versioned migrations applied
at start (`schema_migrations` holds the versions applied). Migrating is one
transaction under an exclusive lock (SQLite's write lock, a PostgreSQL
transaction-level advisory lock), so replicas starting together apply each
migration once; a database whose schema is newer than this hub knows is
refused rather than written with old assumptions.

Tables: `nodes`, the latest heartbeat per node (a row per node id, the whole
heartbeat as JSON beside the columns the queries and the fleet pages filter
and group by), and `node_events`, the history (release changes, failures,
state changes), pruned by age. A heartbeat is one transaction: read the row (FOR UPDATE on
PostgreSQL), upsert guarded by `sent_at`, append its events.

psycopg is imported only when a postgresql:// registry is asked for: the node
never carries it.
"""

from __future__ import annotations

import fcntl
import os
import queue
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from zosnode.hub.registry import (
    Event,
    FleetRow,
    NodeRecord,
    PublishLockBusy,
    RegistryBackend,
    RegistryUnavailable,
    RegistryUsageError,
    Summary,
    events_for,
    heartbeat_from_json,
    heartbeat_json,
    node_state,
)
from zosnode.wire.heartbeat import Heartbeat


def _fill_fleet_columns(cur: Any, q: Callable[[str], str]) -> None:
    """v2: fill `failed_release` for the rows a v1 hub wrote, and recompute
    `state` (an older hub's node_state may differ from today's)."""
    cur.execute("SELECT node_id, heartbeat FROM nodes")
    rows = cur.fetchall()
    updates = []
    for node_id, text in rows:
        hb = heartbeat_from_json(text)
        updates.append((hb.failed_release, node_state(hb), node_id))
    if updates:
        cur.executemany(q("UPDATE nodes SET failed_release = %s, state = %s "
                          "WHERE node_id = %s"), updates)


# A step is SQL or a function of (cursor, q). Statements use %s placeholders
# (psycopg's); SQLite's ? is substituted. {serial} is the one dialect
# difference in the DDL.
Step = str | Callable[[Any, Callable[[str], str]], None]
MIGRATIONS: tuple[tuple[int, tuple[Step, ...]], ...] = (
    (1, (
        "CREATE TABLE nodes (node_id TEXT PRIMARY KEY, farm TEXT NOT NULL, "
        "channel TEXT NOT NULL, release BIGINT NOT NULL, state TEXT NOT NULL, "
        "sent_at BIGINT NOT NULL, received_at BIGINT NOT NULL, heartbeat TEXT NOT NULL)",
        "CREATE INDEX nodes_by_release ON nodes (channel, release)",
        "CREATE INDEX nodes_by_received ON nodes (received_at)",
        "CREATE TABLE node_events (id {serial}, node_id TEXT NOT NULL, at BIGINT NOT NULL, "
        "kind TEXT NOT NULL, detail TEXT NOT NULL)",
        "CREATE INDEX node_events_by_at ON node_events (at)",
        "CREATE INDEX node_events_by_node ON node_events (node_id, id)",
    )),
    # The fleet pages filter and count from columns, never decoding 10,000
    # heartbeats (`FleetRow`); failed_release is the one they lacked. The
    # index covers them, in node id order: SQLite reads it instead of the
    # table (heartbeats and all), 9 against 24 ms for 10,000 nodes.
    (2, (
        "ALTER TABLE nodes ADD COLUMN failed_release BIGINT",
        _fill_fleet_columns,
        "CREATE INDEX nodes_fleet ON nodes (node_id, farm, channel, release, state, "
        "failed_release, received_at)",
    )),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]
# Advisory lock keys (PostgreSQL): any constant no other application uses.
MIGRATION_LOCK = 0x7A6F_7368_7562_0001
PUBLISH_LOCK = 0x7A6F_7368_7562_0002

_UPSERT = (
    "INSERT INTO nodes (node_id, farm, channel, release, state, failed_release, sent_at, "
    "received_at, heartbeat) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (node_id) DO UPDATE SET farm = excluded.farm, channel = excluded.channel, "
    "release = excluded.release, state = excluded.state, "
    "failed_release = excluded.failed_release, sent_at = excluded.sent_at, "
    "received_at = excluded.received_at, heartbeat = excluded.heartbeat "
    "WHERE nodes.sent_at < excluded.sent_at"
)
NOT_NEWER = "not newer than the heartbeat already kept"
# Counting every row for each new node costs O(fleet) per insert; far from
# the cap a count this recent (plus the inserts since) is good enough.
COUNT_MARGIN = 1000
COUNT_MAX_AGE_S = 5.0
# FleetRow's columns, read from the index nodes_fleet.
FLEET_ROWS = ("SELECT node_id, farm, channel, release, state, failed_release, received_at "
              "FROM nodes ORDER BY node_id")
# Ids per `records` query (a fleet page asks for at most 1,000).
RECORDS_PER_QUERY = 500


class _Sql:
    """The queries, over a DB-API cursor; dialects say how to connect and lock."""

    serial = ""
    for_update = ""
    _count: tuple[int, float] | None = None  # (nodes, monotonic time counted)

    def q(self, sql: str) -> str:
        return sql

    @contextmanager
    def tx(self, write: bool) -> Iterator[Any]:
        raise NotImplementedError
        yield

    def lock_migrations(self, cur: Any) -> None:
        return None

    def migrate(self) -> int:
        with self.tx(write=True) as cur:
            self.lock_migrations(cur)
            cur.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                        "(version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)")
            cur.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            have = int(cur.fetchone()[0])
            if have > SCHEMA_VERSION:
                raise RegistryUsageError(
                    f"registry schema v{have} is newer than this hub knows "
                    f"(v{SCHEMA_VERSION}): upgrade the hub")
            for version, statements in MIGRATIONS:
                if version <= have:
                    continue
                for stmt in statements:
                    if isinstance(stmt, str):
                        cur.execute(stmt.format(serial=self.serial))
                    else:
                        stmt(cur, self.q)
                cur.execute(self.q("INSERT INTO schema_migrations (version, applied_at) "
                                   "VALUES (%s, %s)"), (version, int(time.time())))
        return SCHEMA_VERSION

    def record(self, hb: Heartbeat, now: int, max_nodes: int) -> str | None:
        with self.tx(write=True) as cur:
            cur.execute(self.q("SELECT heartbeat, sent_at FROM nodes WHERE node_id = %s"
                               + self.for_update), (hb.node_id,))
            row = cur.fetchone()
            if row is not None and hb.sent_at <= int(row[1]):
                return NOT_NEWER
            if row is None:
                known = self._count
                fresh = known is not None and time.monotonic() - known[1] < COUNT_MAX_AGE_S
                if known is None or not fresh or known[0] >= max_nodes - COUNT_MARGIN:
                    cur.execute("SELECT COUNT(*) FROM nodes")
                    known = (int(cur.fetchone()[0]), time.monotonic())
                if known[0] >= max_nodes:
                    self._count = known
                    return "node registry is full"
                self._count = (known[0] + 1, known[1])
            cur.execute(self.q(_UPSERT), (hb.node_id, hb.farm, hb.channel, hb.release,
                                          node_state(hb), hb.failed_release, hb.sent_at, now,
                                          heartbeat_json(hb)))
            if cur.rowcount == 0:  # a newer one landed between our read and write
                return NOT_NEWER
            old = heartbeat_from_json(row[0]) if row is not None else None
            for e in events_for(old, hb, now):
                cur.execute(self.q("INSERT INTO node_events (node_id, at, kind, detail) "
                                   "VALUES (%s, %s, %s, %s)"),
                            (e.node_id, e.at, e.kind, e.detail))
        return None

    def nodes(self) -> list[NodeRecord]:
        with self.tx(write=False) as cur:
            cur.execute("SELECT heartbeat, received_at FROM nodes ORDER BY node_id")
            rows = cur.fetchall()
        return [NodeRecord(heartbeat_from_json(text), int(at)) for text, at in rows]

    def fleet_rows(self) -> list[FleetRow]:
        with self.tx(write=False) as cur:
            cur.execute(FLEET_ROWS)
            return [FleetRow._make(row) for row in cur.fetchall()]

    def records(self, node_ids: list[str]) -> dict[str, NodeRecord]:
        out: dict[str, NodeRecord] = {}
        with self.tx(write=False) as cur:
            for i in range(0, len(node_ids), RECORDS_PER_QUERY):
                chunk = node_ids[i:i + RECORDS_PER_QUERY]
                cur.execute(self.q("SELECT heartbeat, received_at FROM nodes WHERE node_id IN ("
                                   + ", ".join(["%s"] * len(chunk)) + ")"), chunk)
                for text, at in cur.fetchall():
                    hb = heartbeat_from_json(text)
                    out[hb.node_id] = NodeRecord(hb, int(at))
        return out

    def summary(self, stale_before: int) -> Summary:
        with self.tx(write=False) as cur:
            cur.execute("SELECT channel, release, COUNT(*) FROM nodes GROUP BY channel, release")
            by_release = Counter({(str(c), int(r)): int(n) for c, r, n in cur.fetchall()})
            cur.execute("SELECT state, COUNT(*) FROM nodes GROUP BY state")
            by_state = Counter({str(s): int(n) for s, n in cur.fetchall()})
            cur.execute(self.q("SELECT COUNT(*) FROM nodes WHERE received_at < %s"),
                        (stale_before,))
            stale = int(cur.fetchone()[0])
        return Summary(sum(by_release.values()), by_release, by_state, stale)

    def history(self, node_id: str, limit: int) -> list[Event]:
        with self.tx(write=False) as cur:
            cur.execute(self.q("SELECT node_id, at, kind, detail FROM node_events "
                               "WHERE node_id = %s ORDER BY id DESC LIMIT %s"),
                        (node_id, limit))
            rows = cur.fetchall()
        return [Event(str(n), int(a), str(k), str(d)) for n, a, k, d in rows]

    def prune(self, before: int) -> int:
        with self.tx(write=True) as cur:
            cur.execute(self.q("DELETE FROM node_events WHERE at < %s"), (before,))
            return max(0, int(cur.rowcount))


class SqliteRegistry(_Sql):
    """A SQLite file (WAL); several hub processes on one machine may share it."""

    serial = "INTEGER PRIMARY KEY"

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._publish_mutex = threading.Lock()
        try:
            if path != ":memory:":
                os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
            self._conn = sqlite3.connect(path, timeout=10.0, isolation_level=None,
                                         check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a committed heartbeat survives a killed process;
            # only a power cut may lose the last transactions.
            self._conn.execute("PRAGMA synchronous=NORMAL")
        except (OSError, sqlite3.Error) as exc:
            raise RegistryUsageError(f"registry {path}: {exc}") from None

    def describe(self) -> str:
        return f"SQLite {self.path}"

    def q(self, sql: str) -> str:
        return sql.replace("%s", "?")

    @contextmanager
    def tx(self, write: bool) -> Iterator[Any]:
        with self._lock:
            cur = self._conn.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield cur
                except BaseException:
                    cur.execute("ROLLBACK")
                    raise
                cur.execute("COMMIT")
            except sqlite3.Error as exc:
                raise RegistryUnavailable(f"registry {self.path}: {exc}") from None
            finally:
                cur.close()

    @contextmanager
    def publish_lock(self, timeout_s: float) -> Iterator[None]:
        # flock on a file beside the database: every process sharing the
        # file shares the lock, and heartbeats (the database's own write
        # lock) are not held up by a publication.
        if not self._publish_mutex.acquire(timeout=timeout_s):
            raise PublishLockBusy("another publication holds the publish lock")
        try:
            if self.path == ":memory:":
                yield
                return
            fd = os.open(self.path + ".publish-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                         0o600)
            try:
                end = time.monotonic() + timeout_s
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > end:
                            raise PublishLockBusy(
                                "another hub process holds the publish lock") from None
                        time.sleep(0.02)
                yield
            finally:
                os.close(fd)  # releases the flock
        finally:
            self._publish_mutex.release()

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class PostgresRegistry(_Sql):
    """PostgreSQL through psycopg 3: a small pool of connections, one per worker."""

    serial = "BIGSERIAL PRIMARY KEY"
    for_update = " FOR UPDATE"

    def __init__(self, url: str, *, pool: int = 8, connect_timeout_s: int = 5,
                 statement_timeout_ms: int = 10_000) -> None:
        try:
            import psycopg
        except ImportError:
            raise RegistryUsageError(
                "--registry postgresql://...: needs psycopg 3 "
                "(pip install 'psycopg[binary]')") from None
        self._psycopg = psycopg
        self.url = url
        self.connect_timeout_s = connect_timeout_s
        self.statement_timeout_ms = statement_timeout_ms
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(pool)

    def describe(self) -> str:
        parts = urlsplit(self.url)
        host = parts.hostname or dict(
            p.split("=", 1) for p in parts.query.split("&") if "=" in p).get("host", "")
        return f"PostgreSQL {parts.path.lstrip('/') or '(default db)'} at {host or 'local'}"

    def _connect(self) -> Any:
        return self._psycopg.connect(
            self.url, autocommit=True, connect_timeout=self.connect_timeout_s,
            options=f"-c statement_timeout={self.statement_timeout_ms}")

    @contextmanager
    def _conn(self) -> Iterator[Any]:
        if not self._slots.acquire(timeout=30):
            raise RegistryUnavailable("registry: no database connection free in 30 s")
        conn = None
        try:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self._connect()
            yield conn
        except self._psycopg.Error as exc:
            if conn is not None:
                conn.close()
                conn = None
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RegistryUnavailable(f"registry: {first}") from None
        except BaseException:
            if conn is not None:
                conn.close()
                conn = None
            raise
        finally:
            if conn is not None:
                self._idle.put(conn)
            self._slots.release()

    @contextmanager
    def tx(self, write: bool) -> Iterator[Any]:
        with self._conn() as conn, conn.transaction(), conn.cursor() as cur:
            yield cur

    def lock_migrations(self, cur: Any) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))

    @contextmanager
    def publish_lock(self, timeout_s: float) -> Iterator[None]:
        # A session-level advisory lock on a connection held for the whole
        # publication: every replica on this database waits for it. If the
        # session dies the server releases the lock.
        with self._conn() as conn:
            end = time.monotonic() + timeout_s
            while not conn.execute("SELECT pg_try_advisory_lock(%s)",
                                   (PUBLISH_LOCK,)).fetchone()[0]:
                if time.monotonic() > end:
                    raise PublishLockBusy("another replica holds the publish lock")
                time.sleep(0.02)
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (PUBLISH_LOCK,))

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def open_backend(url: str | None, data_dir: str | None) -> RegistryBackend:
    """The registry `url` names; None: a SQLite file in `data_dir` (or in memory)."""
    if url is None:
        if data_dir is None:
            return SqliteRegistry(":memory:")
        return SqliteRegistry(os.path.join(data_dir, ".hub", "registry.sqlite3"))
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresRegistry(url)
    if url.startswith("sqlite:"):
        path = url.removeprefix("sqlite:")
        if not path:
            raise RegistryUsageError(f"--registry {url}: give sqlite:PATH or sqlite::memory:")
        return SqliteRegistry(path)
    raise RegistryUsageError(
        f"--registry {url[:80]!r}: expected postgresql://... or sqlite:PATH")
