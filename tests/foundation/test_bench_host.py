"""bench/_host.py: the free-page-reporting state a benchmark prints, and the switch it restores."""

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

TOP = Path(__file__).resolve().parents[2]


def _host(tmp_path: Path, features: str | None, order: str | None) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_host", TOP / "bench" / "_host.py")
    assert spec is not None and spec.loader is not None
    host = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(host)
    virtio = tmp_path / "virtio"
    for i, (device, feats) in enumerate((("0x0001", "1" * 64), ("0x0005", features))):
        if feats is None:
            continue
        (virtio / f"virtio{i}").mkdir(parents=True)
        (virtio / f"virtio{i}" / "device").write_text(device + "\n")
        (virtio / f"virtio{i}" / "features").write_text(feats + "\n")
    host.VIRTIO = virtio
    host.PARAM = tmp_path / "page_reporting_order"
    if order is not None:
        host.PARAM.write_text(order + "\n")
    host.BUDDYINFO = tmp_path / "buddyinfo"
    host.BUDDYINFO.write_text("Node 0, zone      DMA      0 0 0 0 0 0 0 0 1 1 3\n")
    return host


REPORTING = "01100101" + "0" * 56  # bits 1, 2, 5 (reporting), 7


def test_state_names_each_case(tmp_path: Path) -> None:
    assert "absent" in _host(tmp_path / "a", None, None).state()
    assert "absent" in _host(tmp_path / "b", "0110000" + "0" * 57, "9").state()  # no bit 5
    assert "on (free blocks of order 9" in _host(tmp_path / "c", REPORTING, "9").state()
    assert "off" in _host(tmp_path / "d", REPORTING, "11").state()


def test_hold_turns_reporting_off_and_restores_it(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    host = _host(tmp_path, REPORTING, "9")
    with pytest.raises(RuntimeError), host.freed_pages_held(True):
        assert host.PARAM.read_text() == "11"  # 11 orders in buddyinfo: none reports
        raise RuntimeError("a benchmark that fails still restores the setting")
    assert host.PARAM.read_text() == "9"
    assert "off" in capsys.readouterr().out
    with host.freed_pages_held(False):
        assert host.PARAM.read_text().strip() == "9"
    assert "on (" in capsys.readouterr().out


def test_hold_that_cannot_write_is_a_one_line_error(tmp_path: Path) -> None:
    host = _host(tmp_path, REPORTING, "9")
    host.PARAM = Path("/proc/version")  # readable, refuses a write even from root
    with pytest.raises(SystemExit, match=r"^--hold-freed-pages: cannot write /proc/version: "):
        with host.freed_pages_held(True):
            pytest.fail("the body runs only once the setting is written")
