"""`zosnode flist ...` end to end through the real CLI entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from zosnode.cli import main

REPO = Path(__file__).resolve().parents[2]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _src(tmp_path: Path, extra: bytes = b"") -> Path:
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True, exist_ok=True)
    (src / "etc" / "hostname").write_bytes(b"node1\n" + extra)
    (src / "bin").mkdir(exist_ok=True)
    (src / "bin" / "tool").write_bytes(os.urandom(300_000))
    (src / "link").symlink_to("etc/hostname") if not (src / "link").is_symlink() else None
    return src


def test_create_inspect_ls_cat_verify_extract(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                               ) -> None:
    store = str(tmp_path / "store")
    src = _src(tmp_path)
    rc, out, err = _run(capsys, "flist", "create", str(src), "--store", store, "--tag", "v1",
                        "-o", str(tmp_path / "v1.flist"))
    assert rc == 0, err
    fid = out.strip()
    assert len(fid) == 64 and "new" in err
    assert (tmp_path / "store" / "flists" / fid).is_file()
    assert (tmp_path / "store" / "tags" / "v1").read_text().strip() == fid

    rc, out, _ = _run(capsys, "flist", "inspect", "v1", "--store", store)
    assert rc == 0 and fid in out and "unique bytes" in out
    rc, out, _ = _run(capsys, "flist", "inspect", str(tmp_path / "v1.flist"))
    assert rc == 0 and fid in out

    rc, out, _ = _run(capsys, "flist", "ls", fid, "/", "--store", store)
    assert out.split() == ["bin", "etc", "link"]
    rc, out, _ = _run(capsys, "flist", "ls", fid, "/", "-l", "--store", store)
    assert "link -> etc/hostname" in out

    rc, out, _ = _run(capsys, "flist", "cat", "v1", "/link", "--store", store)
    assert rc == 0 and out == "node1\n"

    rc, _, err = _run(capsys, "flist", "verify", "v1", "--store", store)
    assert rc == 0 and "0 bad" in err

    rc, _, err = _run(capsys, "flist", "extract", "v1", str(tmp_path / "x"), "--store", store)
    assert rc == 0, err
    assert (tmp_path / "x" / "bin" / "tool").read_bytes() == (src / "bin" / "tool").read_bytes()

    # Second create of a changed tree: reuses the unchanged blocks.
    (src / "etc" / "hostname").write_bytes(b"node2\n")
    rc, out, err = _run(capsys, "flist", "create", str(src), "--store", store, "--tag", "v2")
    assert rc == 0 and "reused" in err
    rc, out, err = _run(capsys, "flist", "diff", "v1", "v2", "--store", store)
    assert "~ /etc/hostname (content, mtime)" in out
    assert "fetches 1 blocks" in err


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["flist", "create", "/nonexistent/src", "--store", "{tmp}/s"], "no such file"),
        (["flist", "inspect", "{tmp}/garbage"], "not canonical CBOR"),
        (["flist", "inspect", "deadbeef", "--store", "{tmp}"], "neither a flist id nor a tag"),
        (["flist", "inspect", "nope"], "give --store"),
        (["flist", "cat", "{tmp}/garbage", "/x"], "--store"),
        (["flist", "create", "{tmp}/garbage", "--store", "{tmp}/s"], "neither a directory"),
        (["flist", "create", "{tmp}", "--store", "{tmp}/garbage"], "garbage"),
        (["flist", "extract", "{tmp}/garbage", "{tmp}/x", "--store", "{tmp}"], "canonical"),
        (["flist", "create", "{tmp}", "--store", "{tmp}/s", "--fine-chunks", "--chunk-kib",
          "64"], "give one"),
    ],
)
def test_user_mistakes_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       argv: list[str], needle: str) -> None:
    (tmp_path / "garbage").write_bytes(b"\xff\x00garbage")
    rc, out, err = _run(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and needle in err, err
    assert "Traceback" not in err


def test_verify_reports_bad_block(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    rc, out, _ = _run(capsys, "flist", "create", str(_src(tmp_path)), "--store", str(store))
    fid = out.strip()
    victim = next(p for p in (store / "blocks").rglob("*") if p.is_file())
    victim.write_bytes(b"corrupted")
    rc, out, err = _run(capsys, "flist", "verify", fid, "--store", str(store))
    assert rc == 2 and victim.name in out and "bad or missing" in err
    rc, out, err = _run(capsys, "flist", "extract", fid, str(tmp_path / "x"),
                        "--store", str(store))
    assert rc == 2 and f"block {victim.name} is " in err and "its reference says" in err, err


def test_runs_as_a_command(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "zosnode", "flist", "create", str(_src(tmp_path)),
         "--store", str(tmp_path / "s")],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert res.returncode == 0, res.stderr
    assert len(res.stdout.strip()) == 64


def test_create_shows_progress_on_a_terminal(tmp_path: Path) -> None:
    import pty

    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        (src / f"f{i}").write_bytes(os.urandom(200_000))
    leader, follower = pty.openpty()
    try:
        res = subprocess.run(
            [sys.executable, "-m", "zosnode", "flist", "create", str(src),
             "--store", str(tmp_path / "s")],
            stdout=subprocess.PIPE, stderr=follower, cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120,
        )
        os.close(follower)
        follower = -1
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    assert res.returncode == 0
    assert b"\r" in seen and b"blocks" in seen and b"new" in seen


def test_extract_without_root_skips_only_what_needs_privilege(
    rich_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil
    import tempfile

    if os.geteuid() != 0:
        pytest.skip("needs root to build the image and then drop to nobody")
    shared = Path(tempfile.mkdtemp(prefix="zosnode-nobody-"))
    try:
        shared.chmod(0o777)
        store = shared / "store"
        rc, out, _ = _run(capsys, "flist", "create", str(rich_tree), "--store", str(store))
        assert rc == 0
        fid = out.strip()
        for p in [store, *store.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        log = shared / "stderr"
        pid = os.fork()
        if pid == 0:  # the child drops to nobody and runs the command in-process
            code = 99
            try:
                sys.stderr = open(log, "w")  # noqa: SIM115 - the child exits right after
                os.setgroups([])
                os.setresgid(65534, 65534, 65534)
                os.setresuid(65534, 65534, 65534)
                code = main(["flist", "extract", fid, str(shared / "out"), "--store", str(store)])
            finally:
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        err = log.read_text()
        assert os.waitstatus_to_exitcode(status) == 0, err
        assert "skipped (needs root): device /null" in err
        assert "skipped (needs root): xattr security.capability of /setuid" in err
        out_dir = shared / "out"
        assert out_dir.stat().st_uid == 65534
        assert (out_dir / "large.bin").read_bytes() == (rich_tree / "large.bin").read_bytes()
        assert (out_dir / "dir" / "hard-small").stat().st_nlink == 2
        assert os.getxattr(out_dir / "small.txt", "user.comment") == b"a note"
        assert (out_dir / "setuid").stat().st_mode & 0o7777 == 0o4755
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_fine_chunks_are_asked_for(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A 64 MiB image keeps the coarse cuts unless `--fine-chunks` asks otherwise."""
    import json

    src = tmp_path / "src"
    src.mkdir()
    (src / "disk.img").write_bytes(os.urandom(64 * 1024 * 1024))
    counts = {}
    for flag in ((), ("--fine-chunks",)):
        rc, out, err = _run(capsys, "flist", "create", str(src), "--store",
                            str(tmp_path / f"s{len(flag)}"), "--compression", "none",
                            "--json", *flag)
        assert rc == 0, err
        counts[flag] = json.loads(out)["blocks"]
    # Coarse: about 1 MiB average (max 4 MiB); fine: about 48 KiB average.
    assert 16 <= counts[()] <= 128, counts
    assert counts[("--fine-chunks",)] >= 600, counts
