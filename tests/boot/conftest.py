"""Boot fixtures: a node zipapp with the initramfs interpreter as its shebang,
and one initramfs built from it per session (the slow part, done once)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.lab.netns import have_root

TOP = Path(__file__).resolve().parents[2]
NODE_PYTHON = "/usr/bin/python3.11"


@dataclass(frozen=True)
class BootFiles:
    zipapp: Path
    kernel: Path
    initramfs: Path
    out: Path


def build_zipapp(dest: Path, anchor: Path | None = None) -> Path:
    out = dest / "zosnode-node.pyz"
    extra = ["--anchor", str(anchor)] if anchor is not None else []
    proc = subprocess.run(
        [sys.executable, str(TOP / "build_zipapp.py"), "--python", NODE_PYTHON, "-o", str(out),
         *extra], capture_output=True, text=True, timeout=600, cwd=TOP)
    if proc.returncode != 0:
        pytest.fail(f"build_zipapp.py failed:\n{proc.stdout}\n{proc.stderr}")
    return out


def build_initramfs(zipapp: Path, out: Path, compression: str = "gzip",
                    extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zosnode", "initramfs", "build", "--zipapp", str(zipapp),
         "-o", str(out), "--lock", str(TOP / "initramfs/packages.lock"),
         "--modules", str(TOP / "initramfs/modules.list"), "--cache", str(TOP / "work/cache"),
         "--compression", compression, *extra],
        capture_output=True, text=True, timeout=900, cwd=TOP)


def require_debian_tools() -> None:
    import shutil

    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool}: the initramfs is built from pinned Debian packages")


@pytest.fixture(scope="session")
def demo_kit(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The demo OS (keys, anchor, flists, releases): its anchor goes into the artifact."""
    from examples import demo_os

    return demo_os.build(tmp_path_factory.mktemp("kit"))


@pytest.fixture(scope="session")
def node_zipapp(tmp_path_factory: pytest.TempPathFactory, demo_kit: Any) -> Path:
    return build_zipapp(tmp_path_factory.mktemp("zipapp"), anchor=demo_kit.anchor)


@pytest.fixture(scope="session")
def boot_files(node_zipapp: Path, tmp_path_factory: pytest.TempPathFactory) -> BootFiles:
    require_debian_tools()
    out = tmp_path_factory.mktemp("boot")
    proc = build_initramfs(node_zipapp, out)
    if proc.returncode != 0:
        pytest.fail(f"initramfs build failed:\n{proc.stdout}\n{proc.stderr}")
    return BootFiles(node_zipapp, out / "vmlinuz", out / "initramfs.img", out)


@pytest.fixture
def root_lab() -> None:
    if not have_root():
        pytest.skip("needs root for network namespaces and taps (CI runs as root)")
