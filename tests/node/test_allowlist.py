"""The exec allow-list refuses anything whose real path is outside the verified mounts."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from zosnode.agent.services.allowlist import resolve_exec
from zosnode.agent.services.errors import ExecRefused


@pytest.fixture
def mount(tmp_path: Path) -> Path:
    m = tmp_path / "mnt"
    (m / "bin").mkdir(parents=True)
    tool = m / "bin" / "tool"
    tool.write_text("#!/bin/true\n")
    tool.chmod(0o755)
    (m / "bin" / "data").write_text("not executable\n")
    (m / "svc.py").write_text("print('hi')\n")
    (m / "bin" / "sh").symlink_to("/bin/sh")
    (m / "bin" / "alias").symlink_to("tool")
    (tmp_path / "outside.py").write_text("print('outside')\n")
    return m


def run(argv: tuple[str, ...], mount: Path) -> tuple[str, ...]:
    return resolve_exec(argv, home=mount, mounts=[mount])


def test_program_inside_the_mount_relative_or_absolute(mount: Path) -> None:
    real = os.path.realpath(mount / "bin" / "tool")
    assert run(("bin/tool", "-x"), mount) == (real, "-x")
    assert run((str(mount / "bin" / "tool"),), mount) == (real,)
    assert run(("bin/alias",), mount) == (real,)  # a link that stays inside is fine


def test_interpreter_runs_a_script_from_the_mount_isolated(mount: Path) -> None:
    got = run(("python", "svc.py", "arg"), mount)
    assert got == (os.path.realpath(sys.executable), "-I", str(mount / "svc.py"), "arg")
    assert run((sys.executable, "svc.py"), mount)[1:3] == ("-I", str(mount / "svc.py"))


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (("/bin/sh", "-c", "id"), "outside the verified mounts"),
        (("bin/sh", "-c", "id"), "outside the verified mounts"),  # symlink out
        (("../outside.py",), "outside the verified mounts"),
        (("python", "-c", "import os"), "only run a script"),
        (("python", "-m", "http.server"), "only run a script"),
        (("python",), "only run a script"),
        (("python", "../outside.py"), "outside the verified mounts"),
        ((sys.executable, "-c", "1"), "only run a script"),
        (("bin/data",), "not executable"),
        (("bin",), "not a regular file"),
        (("bin/missing",), "No such file"),
        (("",), "empty argv"),
    ],
)
def test_refused(argv: tuple[str, ...], why: str, mount: Path) -> None:
    with pytest.raises(ExecRefused, match=why):
        run(argv, mount)


def test_the_mount_point_itself_and_a_sibling_prefix_are_outside(tmp_path: Path) -> None:
    m = tmp_path / "m"
    m.mkdir()
    sibling = tmp_path / "m2"
    sibling.mkdir()
    (sibling / "x").write_text("")
    (sibling / "x").chmod(0o755)
    with pytest.raises(ExecRefused, match="outside"):
        resolve_exec((str(sibling / "x"),), home=m, mounts=[m])
    with pytest.raises(ExecRefused, match="outside"):
        resolve_exec((str(m),), home=m, mounts=[m])
