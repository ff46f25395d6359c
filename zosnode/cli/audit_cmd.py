"""`zosnode audit`: what exactly is in this artifact.

Build id, the artifact's sha256, the SBOM of vendored packages and every file
in the archive with its sha256, for a person or (`--json`) a machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

from zosnode.artifact.record import RECORD_NAME, ArtifactError, file_sha256, running_archive
from zosnode.artifact.sbom import BuildRecord
from zosnode.errors import UserError


def read_record(archive: Path) -> BuildRecord:
    """The build record an artifact carries."""
    try:
        with zipfile.ZipFile(archive) as zf:
            return BuildRecord.from_json(zf.read(RECORD_NAME))
    except (OSError, zipfile.BadZipFile, KeyError) as exc:
        raise ArtifactError(f"{archive}: cannot read build record: {exc}") from exc


def register(sub: Any) -> None:
    p = sub.add_parser(
        "audit",
        help="print the build id, sha256, SBOM and files of an artifact",
        description="Audit a zosnode artifact (by default, the one running).",
    )
    p.add_argument("artifact", nargs="?", type=Path, help="a .pyz (default: this one)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--tcb",
        action="store_true",
        help="instead: the modules of ours that node run and the FUSE mount child import, "
             "and their lines (default: this artifact or source tree)",
    )
    p.add_argument(
        "--check-imports",
        action="store_true",
        help="also import every vendored module through this artifact and report it",
    )
    p.set_defaults(handler=run)


# One importable module per vendored distribution (natives through their
# compiled part), so --check-imports proves the artifact can load each.
VENDORED_MODULES = {
    "trio": "trio",
    "h11": "h11",
    "pynacl": "nacl._sodium",
    "cffi": "_cffi_backend",
    "xxhash": "xxhash._xxhash",
    "backports-zstd": "backports.zstd._zstd",
    "pyfastcdc": "pyfastcdc.cy.fastcdc",
    "typing-extensions": "typing_extensions",
    "pyfuse3": "pyfuse3",
    "attrs": "attr",
    "idna": "idna",
    "outcome": "outcome",
    "sniffio": "sniffio",
    "sortedcontainers": "sortedcontainers",
    "pycparser": "pycparser",
}


def check_imports() -> dict[str, str]:
    """Import each vendored module; map distribution -> where it loaded from."""
    import importlib

    loaded: dict[str, str] = {}
    for dist, module in sorted(VENDORED_MODULES.items()):
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            loaded[dist] = f"FAILED: {exc}"
        else:
            loaded[dist] = str(getattr(mod, "__file__", None) or "built-in")
    return loaded


def collect(archive: Path) -> dict[str, Any]:
    record = read_record(archive)
    files = []
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            data = zf.read(info)
            files.append(
                {"path": info.filename, "size": len(data),
                 "sha256": hashlib.sha256(data).hexdigest()}
            )
    return {
        "artifact": str(archive),
        "sha256": file_sha256(archive),
        "build_id": record.build_id,
        "source_date_epoch": record.source_date_epoch,
        "python": record.python_tag,
        "sbom": [p.__dict__ for p in record.packages],
        "files": files,
    }


def run(args: argparse.Namespace) -> int:
    if args.tcb:
        return _tcb(args)
    archive = args.artifact or running_archive()
    if archive is None:
        raise UserError(
            "not running from an artifact; give a .pyz path (build one with make zipapp)"
        )
    if not archive.is_file():
        raise UserError(f"{archive}: no such file")
    try:
        report = collect(archive)
    except (ArtifactError, zipfile.BadZipFile) as exc:
        raise UserError(f"{archive}: not a zosnode artifact ({exc})") from exc
    failed = False
    if args.check_imports:
        report["imports"] = check_imports()
        failed = any(v.startswith("FAILED") for v in report["imports"].values())
    if args.json:
        print(json.dumps(report, indent=1))
        return 1 if failed else 0
    print(f"artifact  {report['artifact']}")
    print(f"sha256    {report['sha256']}")
    print(f"build id  {report['build_id']}")
    print(f"python    {report['python']}")
    print("sbom:")
    for p in report["sbom"]:
        kind = "native" if p["native"] else "pure"
        print(f"  {p['name']:<18} {p['version']:<12} {kind:<6} {p['license']:<28} {p['sha256']}")
    print(f"files: {len(report['files'])}")
    for f in report["files"]:
        print(f"  {f['sha256'][:16]}  {f['size']:>9}  {f['path']}")
    for dist, where in report.get("imports", {}).items():
        print(f"import {dist:<18} {where}")
    return 1 if failed else 0


def _tcb(args: argparse.Namespace) -> int:
    from zosnode.cli import audit_tcb

    if args.check_imports:
        raise UserError("--tcb and --check-imports are separate audits")
    root = args.artifact or audit_tcb.source_root()
    if args.artifact is not None and not args.artifact.is_file():
        raise UserError(f"{args.artifact}: no such file")
    try:
        tcb = audit_tcb.measure(root.resolve())
    except audit_tcb.TcbError as exc:
        if args.artifact is None:
            raise  # this very tree does not import: our bug
        raise UserError(f"{args.artifact}: {exc}") from None
    print(json.dumps(tcb.to_json(), indent=1) if args.json else audit_tcb.render(tcb))
    return 0
