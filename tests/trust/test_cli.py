"""`zosnode keys` and `zosnode release`: the offline signing workflow and its errors."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from zosnode.cli import main
from zosnode.flist.store import LocalStore
from zosnode.layout import object_id
from zosnode.trust import anchor as anchor_mod
from zosnode.trust.signing import load_anchor

RELEASE = """\
channel = "stable"
version = {version}
expires_in_days = 30
min_agent_version = "0.1.0"
hubs = ["http://127.0.0.1:8080"]

[[flists]]
name = "base"
mount = "/opt/base"

[[services]]
name = "web"
flist = "base"
argv = ["/opt/base/bin/web", "--port", "80"]
env = {{ MODE = "prod" }}
ready = ["/opt/base/bin/check"]
stop_signal = "SIGINT"

[metadata]
notes = "built by the CLI test"
"""


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("zosnode: error: ")
    return lines[0]


@pytest.fixture
def keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> list[Path]:
    paths = []
    for i in range(3):
        path = tmp_path / f"k{i}.key"
        assert cli(capsys, "keys", "generate", "-o", path)[0] == 0
        paths.append(path)
    return paths


@pytest.fixture
def store(tmp_path: Path) -> Path:
    data = tmp_path / "DATA"
    s = LocalStore(data)
    s.init()
    s.set_tag("base", s.put_flist(b"an encoded flist, opaque to the trust layer\n" * 10))
    return data


def test_generate_writes_0600_prints_id_and_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "signer.key"
    code, out, _ = cli(capsys, "keys", "generate", "-o", path)
    assert code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    kid = out.strip()
    assert len(kid) == 64
    assert cli(capsys, "keys", "show", path)[1].strip() == kid
    before = path.read_bytes()
    code, _, err = cli(capsys, "keys", "generate", "-o", path)
    assert code == 2 and "already exists" in one_error(err)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["signer.key"]  # no temp left behind


def test_missing_key_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m").write_bytes(b"x")
    code, _, err = cli(capsys, "release", "sign", tmp_path / "m", "--key", tmp_path / "nope.key")
    assert code == 2 and "nope.key: no such key file" in one_error(err)


def test_key_readable_by_others_is_refused_with_the_reason(
    keys: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    os.chmod(keys[0], 0o644)
    code, _, err = cli(capsys, "keys", "show", keys[0])
    line = one_error(err)
    assert code == 2
    assert "accessible by group or others (mode 0644)" in line and "chmod 600" in line


def test_malformed_toml_names_the_line(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = tmp_path / "release.toml"
    toml.write_text('channel = "stable"\nversion = 3\nhubs = [\n  "http://x",\n  oops\n]\n')
    code, _, err = cli(capsys, "release", "build", toml, "--store", store, "-o", tmp_path / "o")
    line = one_error(err)
    assert code == 2 and "invalid TOML" in line and "line 5" in line
    assert not (tmp_path / "o").exists()


def test_unknown_flist_name(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = tmp_path / "release.toml"
    toml.write_text(RELEASE.format(version=1).replace('name = "base"', 'name = "nope"', 1))
    code, _, err = cli(capsys, "release", "build", toml, "--store", store, "-o", tmp_path / "o")
    assert code == 2 and "unknown flist 'nope'" in one_error(err)


@pytest.mark.parametrize(
    "edit, needle",
    [
        (("version = 1", "version = 1\nversoin = 2"), "unknown key 'versoin'"),
        (('notes = "built by the CLI test"', "ratio = 0.5"), "metadata.ratio: float"),
        (('stop_signal = "SIGINT"', 'stop_signal = "SIGSTOP"'), "stop_signal 'SIGSTOP'"),
        (('channel = "stable"', "channel = 7"), "release.channel: wrong type int"),
    ],
)
def test_bad_release_values_are_one_line(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    edit: tuple[str, str], needle: str,
) -> None:
    toml = tmp_path / "release.toml"
    toml.write_text(RELEASE.format(version=1).replace(*edit))
    code, _, err = cli(capsys, "release", "build", toml, "--store", store, "-o", tmp_path / "o")
    assert code == 2 and needle in one_error(err)


def test_full_offline_workflow(
    keys: list[Path], store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    roots = tmp_path / "roots"
    roots.mkdir()
    root1 = roots / "1.root"
    assert cli(capsys, "release", "root", *[a for k in keys for a in ("--key", k)],
               "--threshold", "2", "--version", "1", "-o", root1)[0] == 0
    for k in keys[:2]:
        assert cli(capsys, "release", "sign", root1, "--key", k)[0] == 0
    anchor = tmp_path / "anchor.cbor"
    assert cli(capsys, "release", "anchor", "--root", root1, "--floor", "1",
               "--build-time", "1700000000", "-o", anchor)[0] == 0
    loaded = load_anchor(anchor)
    assert loaded.floor == 1 and loaded.root.threshold == 2 and loaded.build_time == 1700000000

    toml = tmp_path / "release.toml"
    toml.write_text(RELEASE.format(version=1))
    manifest = tmp_path / "stable-1.manifest"
    assert cli(capsys, "release", "build", toml, "--store", store, "-o", manifest)[0] == 0
    assert cli(capsys, "release", "sign", manifest, "--key", keys[0])[0] == 0

    code, _, err = cli(capsys, "release", "verify", manifest, "--anchor", anchor)
    assert code == 2
    assert "refused: ThresholdError: manifest: 1 valid signature(s)" in one_error(err)

    assert cli(capsys, "release", "sign", manifest, "--key", keys[2])[0] == 0
    code, out, _ = cli(capsys, "release", "verify", manifest, "--anchor", anchor,
                       "--store", store)
    assert code == 0 and out.startswith("OK: manifest stable v1, signed by 2 of 3 keys")

    code, _, err = cli(capsys, "release", "verify", manifest, "--anchor", anchor,
                       "--channel", "beta")
    assert code == 2 and "WrongChannelError" in one_error(err)
    code, _, err = cli(capsys, "release", "verify", manifest, "--anchor", anchor,
                       "--now", str(10**10))
    assert code == 2 and "ExpiredError" in one_error(err)

    # A lying store: the pinned flist's bytes changed.
    fid = LocalStore(store).get_tag("base")
    assert fid is not None
    flist = store / "flists" / fid
    flist.write_bytes(flist.read_bytes()[:-1] + b"!")
    assert object_id(flist.read_bytes()) != fid
    code, _, err = cli(capsys, "release", "verify", manifest, "--anchor", anchor,
                       "--store", store)
    assert code == 2 and "HashMismatchError" in one_error(err)


def test_rotation_through_the_cli(
    keys: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    roots = tmp_path / "roots"
    roots.mkdir()
    new = [tmp_path / f"n{i}.key" for i in range(2)]
    for k in new:
        cli(capsys, "keys", "generate", "-o", k)
    cli(capsys, "release", "root", "--key", keys[0], "--key", keys[1], "--threshold", "2",
        "--version", "1", "-o", roots / "1.root")
    cli(capsys, "release", "root", "--key", new[0], "--key", new[1], "--threshold", "2",
        "--version", "2", "-o", roots / "2.root")
    for k in keys[:2]:
        cli(capsys, "release", "sign", roots / "1.root", "--key", k)
    for k in new:  # only the new keys: refused
        cli(capsys, "release", "sign", roots / "2.root", "--key", k)
    code, _, err = cli(capsys, "release", "verify", roots / "2.root", "--root", roots / "1.root")
    assert code == 2 and "UnknownKeyError" in one_error(err)
    for k in keys[:2]:
        cli(capsys, "release", "sign", roots / "2.root", "--key", k)
    code, out, _ = cli(capsys, "release", "verify", roots / "2.root", "--root", roots / "1.root")
    assert code == 0 and out.startswith("OK: root v2")
    code, out, _ = cli(capsys, "release", "show", roots / "2.root")
    assert code == 0 and '"version": 2' in out


def test_verify_needs_a_trust_source_outside_an_artifact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "m").write_bytes(b"\xa0")
    code, _, err = cli(capsys, "release", "verify", tmp_path / "m")
    assert code == 2 and "give --anchor or --root" in one_error(err)


def test_garbage_input_is_one_line_without_traceback(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.manifest"
    bogus.write_bytes(b"\x00\xff garbage")
    proc = subprocess.run([sys.executable, "-m", "zosnode", "release", "show", str(bogus)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "not a signed root or manifest" in one_error(proc.stderr)


def test_load_embedded_is_none_outside_an_artifact() -> None:
    assert anchor_mod.load_embedded() is None


@pytest.mark.slow
def test_anchor_compiled_into_the_artifact_is_the_trust_source(
    keys: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    top = Path(__file__).resolve().parents[2]
    root = tmp_path / "1.root"
    cli(capsys, "release", "root", "--key", keys[0], "--key", keys[1], "--threshold", "2",
        "--version", "1", "-o", root)
    for k in keys[:2]:
        cli(capsys, "release", "sign", root, "--key", k)
    anchor = tmp_path / "anchor.cbor"
    cli(capsys, "release", "anchor", "--root", root, "--floor", "3", "-o", anchor)
    pyz = tmp_path / "zosnode.pyz"
    subprocess.run([sys.executable, str(top / "build_zipapp.py"), "--anchor", str(anchor),
                    "-o", str(pyz)], check=True, capture_output=True, cwd=tmp_path)
    proc = subprocess.run([sys.executable, str(pyz), "release", "verify", str(root)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("OK: root v1")


def test_manifest_verifies_after_following_rotations_from_a_roots_dir(
    keys: list[Path], store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    roots = tmp_path / "roots"
    roots.mkdir()
    new = tmp_path / "new.key"
    cli(capsys, "keys", "generate", "-o", new)
    cli(capsys, "release", "root", "--key", keys[0], "--key", keys[1], "--threshold", "2",
        "--version", "1", "-o", roots / "1.root")
    cli(capsys, "release", "root", "--key", new, "--threshold", "1", "--version", "2",
        "--manifest-floor", "4", "-o", roots / "2.root")
    for k in keys[:2]:
        cli(capsys, "release", "sign", roots / "1.root", "--key", k)
        cli(capsys, "release", "sign", roots / "2.root", "--key", k)
    cli(capsys, "release", "sign", roots / "2.root", "--key", new)
    toml = tmp_path / "release.toml"
    manifest = tmp_path / "m"
    for version in (3, 4):
        toml.write_text(RELEASE.format(version=version).replace(
            '[metadata]', '[metadata]\nraw = [1, 2]'))
        cli(capsys, "release", "build", toml, "--store", store, "-o", manifest)
        cli(capsys, "release", "sign", manifest, "--key", new)
        code, out, err = cli(capsys, "release", "verify", manifest, "--root", roots / "1.root",
                             "--roots", roots)
        if version == 3:  # below the new root's floor
            assert code == 2 and "RollbackError" in one_error(err)
        else:
            assert code == 0 and "root v2" in out, err
    # Without following the rotation, the new key is unknown.
    code, _, err = cli(capsys, "release", "verify", manifest, "--root", roots / "1.root")
    assert code == 2 and "UnknownKeyError" in one_error(err)
    code, out, _ = cli(capsys, "release", "show", manifest)
    assert code == 0 and '"version": 4' in out
