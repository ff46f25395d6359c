from __future__ import annotations

from pathlib import Path

import pytest

from tests.flist.trees import make_rich_tree
from zosnode.flist.store import LocalStore


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    s = LocalStore(tmp_path / "store")
    s.init()
    return s


@pytest.fixture(scope="session")
def rich_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rich") / "tree"
    make_rich_tree(root)
    return root


from tests.lab.rootfs import debian_rootfs  # noqa: E402, F401 - a fixture for the slow tests
