"""`zosnode hub serve --data DIR`: a new hub starts from a directory that does not exist yet."""

from __future__ import annotations

import http.client
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _serve(data: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "zosnode", "hub", "serve", "--data", str(data),
             "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)


def test_a_missing_data_directory_is_created(tmp_path: Path) -> None:
    data = tmp_path / "new" / "hub-data"
    log = tmp_path / "hub.log"
    proc = _serve(data, log)
    try:
        end = time.monotonic() + 30
        while not (found := re.search(r"listening on 127\.0\.0\.1:(\d+)", log.read_text())):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < end, f"hub did not start: {log.read_text()}"
            time.sleep(0.05)
        conn = http.client.HTTPConnection("127.0.0.1", int(found.group(1)), timeout=10)
        conn.request("GET", "/api/v1/channels")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
    assert stat.S_IMODE(data.stat().st_mode) & 0o755 == 0o755
    assert sorted(p.name for p in data.iterdir()) == [".hub", "blocks", "channels", "flists",
                                                      "roots"]
    # The node registry, private to the hub (never served, not world-readable).
    assert stat.S_IMODE((data / ".hub").stat().st_mode) == 0o700
    assert (data / ".hub" / "registry.sqlite3").is_file()


def test_a_data_path_that_is_a_file_is_a_one_line_mistake(tmp_path: Path) -> None:
    (tmp_path / "taken").write_bytes(b"")
    for data in (tmp_path / "taken", tmp_path / "taken" / "sub"):
        proc = subprocess.run(
            [sys.executable, "-m", "zosnode", "hub", "serve", "--data", str(data),
             "--listen", "127.0.0.1:0"],
            capture_output=True, text=True, timeout=60, cwd=REPO)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and "--data" in proc.stderr
        assert "not a directory" in proc.stderr.lower()
