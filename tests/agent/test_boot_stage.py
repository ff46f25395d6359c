"""`main.BootStage`: the boot stage is imported by a thread during the bring-up,
and the agent's task gets its hook, or its import error, once the network is up."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from zosnode.agent import main, phases

STAGE = '''
import threading
IMPORTED_ON = threading.current_thread().name
CALLS = []

async def after_network(config, network, say, *, fuse_command, boot):
    CALLS.append((config, network, fuse_command, boot))
'''


@pytest.fixture
def stage_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = "zosnode_test_fake_boot_stage"
    (tmp_path / f"{name}.py").write_text(STAGE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(main.BootStage, "MODULE", name)
    yield name
    sys.modules.pop(name, None)


def test_boot_stage_is_imported_off_the_main_thread_and_called_with_its_settings(
        stage_module: str) -> None:
    clock = phases.BootClock()
    stage = main.BootStage(["child", "argv"], clock)
    said: list[str] = []
    config: Any = object()
    network: Any = object()
    trio.run(stage.after_network, config, network, said.append)
    module = sys.modules[stage_module]
    assert module.IMPORTED_ON == "boot-stage-import" != threading.main_thread().name
    assert module.CALLS == [(config, network, ["child", "argv"], clock)]


def test_a_failed_import_is_raised_in_the_agents_task(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(main.BootStage, "MODULE", "zosnode_test_no_such_boot_stage")
    stage = main.BootStage(None, phases.BootClock())
    config: Any = object()
    network: Any = object()
    with pytest.raises(ModuleNotFoundError, match="zosnode_test_no_such_boot_stage"):
        trio.run(stage.after_network, config, network, print)
