"""Progress on long work: `flist create`, `flist extract`, `hub push`.

On a terminal (stderr a pty here) each draws one line, redrawn in place at
most about ten times a second, with bytes, rate and time left; piped, stderr
carries no progress at all; `--json` prints one summary object on stdout.
"""

from __future__ import annotations

import json
import os
import pty
import random
import subprocess
import sys
import time
from pathlib import Path

import nacl.signing

from tests.hub.conftest import start_hub
from zosnode.cli.meter import MeterState
from zosnode.hub.storage import LocalStorage
from zosnode.trust.keyfile import HEADER

TOP = Path(__file__).resolve().parents[2]
REDRAW = "\r\x1b[K"


def _tree(root: Path) -> Path:
    r = random.Random(5)
    (root / "big").mkdir(parents=True)
    for i in range(6):
        (root / "big" / f"f{i}").write_bytes(r.randbytes(6 << 20))
    (root / "small").mkdir()
    for i in range(400):
        (root / "small" / f"s{i}").write_bytes(r.randbytes(2000))
    return root


def _run(*argv: str, tty: bool) -> tuple[int, str, str, float]:
    """Run the CLI with stderr on a pty (a terminal) or a pipe; stdout is a pipe."""
    cmd = [sys.executable, "-m", "zosnode", *argv]
    started = time.monotonic()
    if not tty:
        p = subprocess.run(cmd, cwd=TOP, capture_output=True, text=True, timeout=120)
        return p.returncode, p.stdout, p.stderr, time.monotonic() - started
    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, cwd=TOP, stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    err = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed its side
            break
        if not chunk:
            break
        err += chunk
    assert proc.stdout is not None
    out = proc.stdout.read()
    rc = proc.wait(timeout=120)
    os.close(master)
    return rc, out, err.decode(errors="replace"), time.monotonic() - started


def _check_meter(err: str, took: float, unit: str) -> None:
    draws = err.count(REDRAW)
    assert draws >= 1, err
    # At most ten redraws a second, plus the forced first and last ones.
    assert draws <= 10 * took + 3, (draws, took)
    last = err.rsplit(REDRAW, 1)[1]
    assert unit in last and "/s" in last and "MiB" in last, last
    print(f"{draws} redraws in {took:.1f} s; last: {last.strip()!r}")


def test_meter_line_says_bytes_rate_and_time_left() -> None:
    s = MeterState("create", 10, 100 << 20, 4, 25 << 20, started=0.0, unit="files")
    line = s.line(now=5.0)
    assert line == "create: 4/10 files, 25.0 MiB/100.0 MiB, 5.0 MiB/s, 15 s left"
    only_bytes = MeterState("extract", 0, 8 << 20, 0, 2 << 20, started=1.0)
    assert only_bytes.line(now=3.0) == "extract: 2.0 MiB/8.0 MiB, 1.0 MiB/s, 6 s left"


def test_create_and_extract_show_progress_on_a_terminal_only(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    store = str(tmp_path / "store")
    rc, out, err, took = _run("flist", "create", str(src), "--store", store, tty=True)
    assert rc == 0, err
    fid = out.strip()
    assert len(fid) == 64
    _check_meter(err, took, "files")
    # Piped: no progress, only the summary line.
    rc, out, err, _ = _run("flist", "create", str(src), "--store", store, tty=False)
    assert rc == 0 and out.strip() == fid
    assert "\r" not in err and "\x1b" not in err and len(err.splitlines()) == 1, err

    rc, out, err, took = _run("flist", "extract", fid, str(tmp_path / "x1"), "--store", store,
                              tty=True)
    assert rc == 0, err
    _check_meter(err, took, "extract: ")
    rc, out, err, _ = _run("flist", "extract", fid, str(tmp_path / "x2"), "--store", store,
                           "--json", tty=False)
    assert rc == 0 and "\r" not in err and "\x1b" not in err
    summary = json.loads(out)
    assert summary["bytes"] == 6 * (6 << 20) + 400 * 2000
    assert summary["entries"] == 1 + 2 + 6 + 400 and summary["skipped"] == []


def test_create_json_summary(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    rc, out, err, _ = _run("flist", "create", str(src), "--store", str(tmp_path / "s"),
                           "--json", tty=False)
    assert rc == 0, err
    assert err == ""
    doc = json.loads(out)
    assert len(doc["id"]) == 64 and (tmp_path / "s" / "flists" / doc["id"]).is_file()
    assert doc["files"] == 406 and doc["file_bytes"] == 6 * (6 << 20) + 400 * 2000
    assert doc["new_blocks"] == doc["blocks"] > 0 and doc["reused_bytes"] == 0
    assert doc["seconds"] > 0 and doc["bytes_per_second"] > 0


def test_push_and_extract_from_the_hub_show_progress_and_a_json_summary(
        tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    store = str(tmp_path / "store")
    rc, out, err, _ = _run("flist", "create", str(src), "--store", store, "--tag", "t",
                           tty=False)
    assert rc == 0, err
    fid = out.strip()
    key = nacl.signing.SigningKey.generate()
    keyfile = tmp_path / "pub.key"
    keyfile.write_text(f"{HEADER}\n{bytes(key).hex()}\n")
    keyfile.chmod(0o600)
    (tmp_path / "data").mkdir()
    live, stop = start_hub(LocalStorage(str(tmp_path / "data")),
                           publishers=(key.verify_key.encode().hex(),))
    try:
        args = ("hub", "push", "--hub", live.url, "--key", str(keyfile), "--store", store)
        rc, out, err, took = _run(*args, tty=True)
        assert rc == 0, err
        assert out.startswith("pushed ")
        _check_meter(err, took, "objects")
        assert "push: 1 flist(s)" in err  # the event lines stay, above the meter
        rc, out, err, _ = _run(*args, "--json", tty=False)
        assert rc == 0, err
        assert "\r" not in err and "\x1b" not in err
        doc = json.loads(out)
        assert doc["blocks_sent"] == 0 and doc["blocks_total"] > 0 and doc["seconds"] > 0
        # What was pushed comes back: `flist extract --hub` draws the same meter.
        rc, out, err, took = _run("flist", "extract", fid, str(tmp_path / "x1"),
                                  "--hub", live.url, tty=True)
        assert rc == 0, err
        _check_meter(err, took, "extract: ")
        rc, out, err, _ = _run("flist", "extract", fid, str(tmp_path / "x2"),
                               "--hub", live.url, "--json", tty=False)
        assert rc == 0 and "\r" not in err and "\x1b" not in err, err
        assert json.loads(out)["bytes"] == 6 * (6 << 20) + 400 * 2000
    finally:
        stop()
