from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]


def build(output: Path) -> Path:
    subprocess.run(
        [sys.executable, str(TOP / "build_zipapp.py"), "-o", str(output)],
        check=True, capture_output=True, text=True,
    )
    return output


@pytest.fixture(scope="session")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly built artifact, outside the checkout."""
    return build(tmp_path_factory.mktemp("artifact") / "zosnode.pyz")
