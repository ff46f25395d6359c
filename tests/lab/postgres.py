"""A throwaway PostgreSQL cluster, run as `nobody`, reachable by its socket only.

The binaries come from Debian's `postgresql` package. The cluster lives in a
directory the test creates (owned by nobody), listens on no TCP port
(`-h ''`) and only on a Unix socket in that directory, so any network
namespace reaches it through the file system. It can be stopped and started
again (the outage tests) and is removed at the end.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.lab.netns import require_root

NOBODY = 65534


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


@dataclass
class Postgres:
    bindir: Path
    data: Path
    sockdir: Path
    log: Path

    @property
    def url(self) -> str:
        return f"postgresql://pg@/postgres?host={quote(str(self.sockdir), safe='')}"

    def _ctl(self, *args: str) -> None:
        subprocess.run([str(self.bindir / "pg_ctl"), "-D", str(self.data), *args],
                       check=True, user=NOBODY, group=NOBODY, capture_output=True,
                       timeout=60)

    def start(self) -> None:
        self._ctl("-o", f"-k {self.sockdir} -h ''", "-l", str(self.log), "-w", "start")

    def stop(self) -> None:
        # Fast shutdown: sessions are cut, as when the server goes away.
        self._ctl("-m", "fast", "-w", "stop")

    def psql(self, sql: str) -> str:
        out = subprocess.run([str(self.bindir / "psql"), "-h", str(self.sockdir), "-U", "pg",
                              "-d", "postgres", "-At", "-c", sql],
                             capture_output=True, text=True, timeout=30, check=True)
        return out.stdout


@contextmanager
def postgres() -> Iterator[Postgres]:
    require_root("a PostgreSQL cluster run as nobody")
    bindir = pg_bin()
    if bindir is None:
        pytest.skip("needs PostgreSQL (apt postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("needs psycopg (pip install 'psycopg[binary]')")
    top = Path(tempfile.mkdtemp(prefix="zos-pg-"))
    os.chmod(top, 0o755)
    os.chown(top, NOBODY, NOBODY)
    pg = Postgres(bindir, top / "data", top, top / "pg.log")
    try:
        subprocess.run([str(bindir / "initdb"), "-D", str(pg.data), "-A", "trust", "-U", "pg",
                        "--no-sync"], check=True, user=NOBODY, group=NOBODY,
                       capture_output=True, timeout=120, cwd=top)
        pg.start()
        try:
            yield pg
        finally:
            if (pg.data / "postmaster.pid").exists():
                pg.stop()
    finally:
        shutil.rmtree(top, ignore_errors=True)
