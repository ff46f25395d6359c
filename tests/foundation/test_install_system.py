"""vendor/install-system.sh: the one install step of make demo, make test and CI.

The real run (every package present after CI's own install) must install
nothing and be quick; the decisions for missing packages are checked with
stand-in `dpkg-query`, `id` and `apt-get` on PATH, so no package is touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.foundation.conftest import TOP

SCRIPT = TOP / "vendor" / "install-system.sh"
LIST = TOP / "vendor" / "system-packages.txt"


def packages() -> dict[str, str]:
    out = {}
    for line in LIST.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            need, pkg = line.split()
            out[pkg] = need
    return out


def shims(tmp_path: Path, *, missing: set[str], uid: int) -> tuple[dict[str, str], Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    missing_re = "|".join(sorted(missing)) or "^$"
    scripts = {
        "dpkg-query": f"""#!/bin/bash
pkg="${{@: -1}}"
if [[ "$pkg" =~ ^({missing_re})$ ]]; then exit 1; fi
echo -n installed
""",
        "id": f"#!/bin/bash\necho {uid}\n",
        "apt-get": f'#!/bin/bash\necho "apt-get $*" >> {calls}\n',
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(body)
        path.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    return env, calls


def run(env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def test_list_is_well_formed() -> None:
    pkgs = packages()
    assert set(pkgs.values()) <= {"build", "test"}
    assert {"libfuse3-dev", "python3-venv"} <= {p for p, n in pkgs.items() if n == "build"}
    assert {"qemu-system-x86", "dnsmasq-base", "nftables", "kea-dhcp4-server"} <= set(pkgs)


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="not a Debian system")
def test_real_run_with_everything_present_installs_nothing_and_is_quick(tmp_path: Path) -> None:
    missing = [p for p in packages()
               if subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", p],
                                 capture_output=True, text=True).stdout != "installed"]
    if missing:
        pytest.skip(f"system packages not installed here: {' '.join(missing)}")
    start = time.monotonic()
    proc = run()
    took = time.monotonic() - start
    print(f"install-system with every package present: {took * 1000:.0f} ms")
    assert proc.returncode == 0, proc.stderr
    assert f"all {len(packages())} system packages present" in proc.stderr
    assert took < 10  # the bound for a machine that has everything


def test_root_installs_only_what_is_missing(tmp_path: Path) -> None:
    env, calls = shims(tmp_path, missing={"casync", "ovmf"}, uid=0)
    proc = run(env)
    assert proc.returncode == 0, proc.stderr
    lines = calls.read_text().splitlines()
    assert lines[0] == "apt-get update -qq"
    assert lines[1].endswith("casync ovmf")
    assert "installing 2 packages: casync ovmf" in proc.stderr


def test_not_root_missing_build_package_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env, calls = shims(tmp_path, missing={"libfuse3-dev", "qemu-system-x86"}, uid=1000)
    proc = run(env)
    assert proc.returncode == 2
    assert "sudo apt-get install libfuse3-dev qemu-system-x86" in proc.stderr
    assert "cannot build without: libfuse3-dev" in proc.stderr
    assert not calls.exists()


def test_not_root_missing_only_test_packages_goes_on(tmp_path: Path) -> None:
    env, calls = shims(tmp_path, missing={"qemu-system-x86"}, uid=1000)
    proc = run(env)
    assert proc.returncode == 0
    assert "will skip" in proc.stderr
    assert not calls.exists()
