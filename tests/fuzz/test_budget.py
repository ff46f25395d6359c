"""The harness itself: the budget holds, crashers are saved, folders are claimed."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest
from hypothesis import strategies as st

import tests.fuzz
from tests.fuzz.budget import (
    REGRESSIONS,
    SECONDS_ENV,
    Target,
    budget_seconds,
    replay,
    run_budgeted,
    targets,
)
from tests.fuzz.mutate import havoc


def _never_fails(data: bytes) -> None:
    pass


def test_budget_bounds_the_run() -> None:
    target = Target("quiet", _never_fails, register=False)
    stats = run_budgeted(target, st.binary(max_size=64), seconds=0.5)
    print(f"{stats.examples} examples in {stats.seconds:.2f} s, {stats.batches} batches")
    assert stats.seconds >= 0.5
    assert stats.seconds < 5  # one mis-sized batch at most, on a loaded machine
    assert stats.batches >= 2 and stats.examples > 20


def test_crasher_is_shrunk_and_saved(tmp_path: Path) -> None:
    def picky(data: bytes) -> None:
        if len(data) >= 3 and data[0] == 0xAB:
            raise KeyError("an untyped error escaped")

    target = Target("picky", picky, root=tmp_path, register=False)
    with pytest.raises(KeyError) as info:
        run_budgeted(target, st.binary(max_size=64), seconds=20)
    saved = list((tmp_path / "picky").iterdir())
    assert len(saved) == 1 and saved[0].name.startswith("crash-")
    assert saved[0].read_bytes() == b"\xab\x00\x00"  # the shrunk input
    assert any(str(saved[0]) in note for note in info.value.__notes__)


def test_crasher_in_a_havoc_batch_is_saved(tmp_path: Path) -> None:
    def no_double_zero(data: bytes) -> None:
        if b"\0\0" in data:
            raise IndexError("an untyped error escaped")

    target = Target("batch", no_double_zero, root=tmp_path, register=False)
    with pytest.raises(IndexError):
        run_budgeted(target, havoc([b"a-b-c-d-e-f"]), seconds=20)
    (saved,) = (tmp_path / "batch").iterdir()
    assert b"\0\0" in saved.read_bytes()


def test_replay_needs_an_input(tmp_path: Path) -> None:
    test = replay(Target("empty", _never_fails, root=tmp_path, register=False))
    with pytest.raises(pytest.fail.Exception, match="holds no input"):
        test()


def test_budget_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECONDS_ENV, "7.5")
    assert budget_seconds() == 7.5
    for bad in ("soon", "0", "-1"):
        monkeypatch.setenv(SECONDS_ENV, bad)
        with pytest.raises(ValueError):
            budget_seconds()


def test_every_regressions_folder_has_a_target() -> None:
    for mod in pkgutil.iter_modules(tests.fuzz.__path__):
        if mod.name.startswith("test_"):
            importlib.import_module(f"tests.fuzz.{mod.name}")
    folders = {p.name for p in REGRESSIONS.iterdir() if p.is_dir()}
    assert folders <= set(targets()), f"folders without a target: {folders - set(targets())}"
    missing = {name for name in targets() if name not in folders}
    assert not missing, f"targets without a regressions folder: {missing}"
