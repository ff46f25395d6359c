"""The CLI's error policy: user mistakes exit 2 with one line, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from zosnode.cli import GROUPS, main


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zosnode", *argv], capture_output=True, text=True
    )


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["no-such-command"], "invalid choice: 'no-such-command'"),
        (["audit", "/nonexistent/zosnode.pyz"], "/nonexistent/zosnode.pyz: no such file"),
        (["audit", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(argv: list[str], needle: str) -> None:
    proc = run_cli(*argv)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("zosnode: error: ")
    assert needle in lines[0]
    assert "Traceback" not in proc.stderr


def test_not_an_artifact_is_a_user_error(tmp_path: pytest.TempPathFactory) -> None:
    bogus = tmp_path / "bogus.pyz"  # type: ignore[operator]
    bogus.write_bytes(b"not a zip at all")
    proc = run_cli("audit", str(bogus))
    assert proc.returncode == 2
    assert "not a zosnode artifact" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_internal_failure_exits_1_and_debug_shows_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import zosnode.cli.version_cmd as version_cmd

    def boom(args: object) -> int:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(version_cmd, "run", boom)
    assert main(["version"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (
        "zosnode: internal error: RuntimeError: disk on fire (run with --debug for a traceback)"
    )
    assert main(["--debug", "version"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_every_group_has_help() -> None:
    for group in GROUPS:
        proc = run_cli(group, "--help")
        assert proc.returncode == 0, (group, proc.stderr)
        assert proc.stdout.startswith(f"usage: zosnode {group}")


def test_group_without_command_shows_help_and_exits_2() -> None:
    proc = run_cli("node")
    assert proc.returncode == 2
    assert "usage: zosnode node" in proc.stderr


def test_version() -> None:
    proc = run_cli("version")
    assert proc.returncode == 0
    assert proc.stdout.startswith("zosnode ")


def test_only_the_named_group_is_imported() -> None:
    # `version` must not pay for the node's or the hub's imports.
    code = (
        "import sys; from zosnode.cli import main; main(['version']); "
        "print(sorted(m for m in ('trio', 'nacl', 'pyfuse3') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
