"""The node's part of the build record (`zosnode/_artifact.json`; the SBOM: `artifact.sbom`)."""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

RECORD_NAME = "zosnode/_artifact.json"
NATIVE_PREFIX = "_native/"


class ArtifactError(Exception):
    """The artifact itself is damaged or not one of ours."""


@dataclass(frozen=True)
class Record:
    build_id: str
    native_files: dict[str, str]  # path under _native/ -> sha256

    @classmethod
    def from_json(cls, raw: bytes) -> "Record":
        try:
            data = json.loads(raw)
            files = {str(k): str(v) for k, v in data["native_files"].items()}
            return cls(build_id=str(data["build_id"]), native_files=files)
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"build record is malformed: {exc}") from exc


def running_archive() -> Path | None:
    """The .pyz this process runs from, or None when run from a checkout."""
    import zosnode

    archive = getattr(getattr(zosnode.__spec__, "loader", None), "archive", None)
    return Path(archive) if archive else None


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
