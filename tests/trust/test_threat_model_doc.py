"""docs/threat-model.md names, for each attack, a test: those tests must exist."""

from __future__ import annotations

import re
from pathlib import Path

from tests.trust.test_attacks import ATTACKS

TOP = Path(__file__).resolve().parents[2]
DOC = TOP / "docs" / "threat-model.md"


def _table_rows() -> list[str]:
    text = DOC.read_text()
    section = text[text.index("## Attacks, defences") :]
    section = section[: section.index("\n## ", 1)]
    return [line for line in section.splitlines() if line.startswith("| ")]


def test_every_attack_row_is_named_in_the_doc_and_exists() -> None:
    names = {a.attack for a in ATTACKS}
    cited: set[str] = set()
    for row in _table_rows():
        for ref in re.findall(r"`([^`]+)`", row.split("|")[-2]):
            if "::" in ref or ref.startswith("tests/"):
                path, _, func = ref.partition("::")
                source = (TOP / path).read_text()
                assert not func or f"def {func}(" in source, ref
            elif ref.startswith("test_"):
                sources = "".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
                assert f"def {ref}(" in sources, ref
            else:
                assert ref in names, f"doc cites unknown attack row {ref!r}"
                cited.add(ref)
    missing = names - cited
    assert not missing, f"attack rows not in docs/threat-model.md: {sorted(missing)}"
