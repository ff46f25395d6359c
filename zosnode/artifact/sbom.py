"""The build record whole: the node's part (`Record`) and the SBOM that only build_zipapp.py
(which writes it) and `zosnode audit` (which shows it) need."""

from __future__ import annotations

import json
from dataclasses import dataclass

from zosnode.artifact.record import ArtifactError, Record


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    license: str
    sha256: str  # of the wheel or sdist that was vendored
    native: bool


@dataclass(frozen=True)
class BuildRecord(Record):
    source_date_epoch: int
    python_tag: str
    packages: tuple[Package, ...]

    @classmethod
    def from_json(cls, raw: bytes) -> BuildRecord:
        node = Record.from_json(raw)
        try:
            data = json.loads(raw)
            return cls(node.build_id, node.native_files,
                       source_date_epoch=int(data["source_date_epoch"]),
                       python_tag=str(data["python_tag"]),
                       packages=tuple(Package(**p) for p in data["packages"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"build record is malformed: {exc}") from exc

    def to_json(self) -> bytes:
        """The build record as the artifact carries it."""
        data = {
            "build_id": self.build_id,
            "source_date_epoch": self.source_date_epoch,
            "python_tag": self.python_tag,
            "packages": [p.__dict__ for p in self.packages],
            "native_files": dict(sorted(self.native_files.items())),
        }
        return json.dumps(data, indent=1, sort_keys=True).encode() + b"\n"
