"""`zosnode bootstrap` as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.boot.conftest import TOP


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zosnode", "bootstrap", *argv],
                          capture_output=True, text=True, timeout=120, cwd=TOP)


def test_ipxe_to_stdout_and_file(tmp_path: Path) -> None:
    proc = _cli("ipxe", "--farm", "f1", "--hub", "http://10.0.0.1:8080,http://10.0.0.2")
    assert proc.returncode == 0 and proc.stdout.startswith("#!ipxe\n")
    assert "zos.hub=http://10.0.0.1:8080 zos.hub=http://10.0.0.2 " in proc.stdout
    out = tmp_path / "boot.ipxe"
    assert _cli("ipxe", "--farm", "f1", "--hub", "http://h", "-o", str(out)).returncode == 0
    assert out.read_text() == _cli("ipxe", "--farm", "f1", "--hub", "http://h").stdout


@pytest.mark.parametrize("argv, needle", [
    (["ipxe", "--farm", "bad farm", "--hub", "http://h"], "farm"),
    (["ipxe", "--farm", "f", "--hub", "ftp://h"], "hub"),
    (["ipxe", "--farm", "f"], "--hub"),
    (["efi", "--farm", "f", "--hub", "https://only-tls", "-o", "/tmp/never-written.img"],
     "plain http"),
    (["dnsmasq", "--farm", "f", "--hub", "http://h", "-o", "/tmp/x", "--interface", "br0",
      "--network", "10.0.0.0/24", "--range", "10.0.0.5"], "first,last"),
])
def test_user_mistakes_are_one_line_and_exit_2(argv: list[str], needle: str) -> None:
    proc = _cli(*argv)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and needle in proc.stderr
    assert not Path("/tmp/never-written.img").exists()


def test_dnsmasq_directory(tmp_path: Path) -> None:
    if not Path("/usr/lib/ipxe/undionly.kpxe").exists():
        pytest.skip("needs Debian's ipxe package for the TFTP loaders")
    proc = _cli("dnsmasq", "--farm", "f", "--hub", "http://10.0.0.1", "-o", str(tmp_path),
                "--interface", "br0", "--network", "10.0.0.0/24")
    assert proc.returncode == 0, proc.stderr
    conf = (tmp_path / "dnsmasq.conf").read_text()
    assert f"tftp-root={tmp_path / 'tftp'}" in conf and "proxy" in conf
    assert sorted(p.name for p in (tmp_path / "tftp").iterdir()) == [
        "boot.ipxe", "ipxe.efi", "undionly.kpxe"]


def test_output_lands_whole_in_a_directory_made_for_it(tmp_path: Path) -> None:
    out = tmp_path / "new" / "sub" / "boot.ipxe"
    proc = _cli("ipxe", "--farm", "f1", "--hub", "http://h", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().startswith("#!ipxe\n")
    assert [p.name for p in out.parent.iterdir()] == ["boot.ipxe"]  # no temp left behind
