"""Secure Boot keys for a farm: PK, KEK and db, and their enrolment into firmware.

`make_keys` writes three RSA-2048 self-signed certificates with their keys
(the `openssl` command line), the owner GUID, DER copies for firmware setup
menus and, when efitools is installed, the signed `.auth` updates for
`efi-updatevar` or a firmware's "enrol from file". What each key guards:

- PK (platform key): who may change KEK. Keep it offline after enrolment.
- KEK (key exchange key): who may change db and dbx.
- db: what the firmware runs. The boot-signing key: UKIs and iPXE are signed
  with it (`zosnode bootstrap uki`, `bootstrap sign`).

`enrol_ovmf` writes an OVMF variable store holding them with Secure Boot on,
through `virt-fw-vars` (the virt-firmware package, a test dependency): the lab's
way in. Real hardware: docs/boot-trust.md.
"""

from __future__ import annotations

import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from zosnode.bootmedia import tools
from zosnode.bootmedia.errors import BuildInputError

KEY_NAMES = ("PK", "KEK", "db")
OWNER_FILE = "owner.guid"
VIRT_FW_VARS = "virt-fw-vars"


@dataclass(frozen=True)
class KeySet:
    directory: Path

    def key(self, name: str) -> Path:
        return self.directory / f"{name}.key"

    def cert(self, name: str) -> Path:
        return self.directory / f"{name}.crt"

    @property
    def owner(self) -> str:
        try:
            text = (self.directory / OWNER_FILE).read_text().strip()
            return str(uuid.UUID(text))
        except (OSError, ValueError) as exc:
            raise BuildInputError(f"{self.directory / OWNER_FILE}: no owner GUID ({exc})") from None

    def check_certs(self) -> None:
        for name in KEY_NAMES:
            if not self.cert(name).is_file():
                raise BuildInputError(f"{self.cert(name)} is missing")




def make_keys(out: Path, common_name: str = "zosnode farm", days: int = 3650) -> KeySet:
    """A new PK/KEK/db set in `out` (which must not hold one already)."""
    if shutil.which("openssl") is None:
        raise BuildInputError("the openssl command is missing: install the Debian package openssl")
    if "/" in common_name or not common_name.isprintable() or len(common_name) > 48:
        raise BuildInputError("common name: at most 48 printable characters, no '/'")
    keys = KeySet(out)
    out.mkdir(parents=True, exist_ok=True)
    existing = [p.name for n in KEY_NAMES for p in (keys.key(n), keys.cert(n)) if p.exists()]
    if existing:
        raise BuildInputError(f"{out} already holds {', '.join(existing)}: not overwritten")
    out.chmod(0o700)
    owner = str(uuid.uuid4())
    (out / OWNER_FILE).write_text(owner + "\n")
    for name in KEY_NAMES:
        tools.run(["openssl", "req", "-new", "-x509", "-newkey", "rsa:2048", "-sha256", "-nodes",
              "-days", str(days), "-subj", f"/CN={common_name} {name}/",
              "-keyout", str(keys.key(name)), "-out", str(keys.cert(name))])
        keys.key(name).chmod(0o600)
        tools.run(["openssl", "x509", "-in", str(keys.cert(name)), "-outform", "DER",
              "-out", str(out / f"{name}.cer")])
    if shutil.which("cert-to-efi-sig-list") and shutil.which("sign-efi-sig-list"):
        _auth_files(keys, owner)
    return keys


def _auth_files(keys: KeySet, owner: str) -> None:
    """ESL and signed .auth updates (efitools): PK self-signed, KEK by PK, db by KEK."""
    signer = {"PK": "PK", "KEK": "PK", "db": "KEK"}
    for name in KEY_NAMES:
        esl = keys.directory / f"{name}.esl"
        tools.run(["cert-to-efi-sig-list", "-g", owner, str(keys.cert(name)), str(esl)])
        by = signer[name]
        tools.run(["sign-efi-sig-list", "-g", owner, "-k", str(keys.key(by)),
                   "-c", str(keys.cert(by)), name, str(esl),
                   str(keys.directory / f"{name}.auth")])


def virt_fw_vars() -> str:
    """The virt-fw-vars command: on PATH or beside this interpreter (a venv)."""
    found = shutil.which(VIRT_FW_VARS) or shutil.which(VIRT_FW_VARS,
                                                       path=str(Path(sys.executable).parent))
    if found is None:
        raise BuildInputError("virt-fw-vars is missing: pip install virt-firmware==25.7.3")
    return found


def enrol_ovmf(keys: KeySet, template: Path, out: Path, secure_boot: bool = True) -> None:
    """An OVMF variable store from `template` with PK, KEK and db enrolled.

    With `secure_boot` False the keys are there but Secure Boot stays off:
    the firmware then runs anything, signed or not.
    """
    keys.check_certs()
    if not template.is_file():
        raise BuildInputError(f"{template} is missing (Debian package ovmf)")
    owner = keys.owner
    argv = [virt_fw_vars(), "--input", str(template), "--output", str(out),
            "--set-pk", owner, str(keys.cert("PK")), "--add-kek", owner, str(keys.cert("KEK")),
            "--add-db", owner, str(keys.cert("db"))]
    out.parent.mkdir(parents=True, exist_ok=True)
    # With a PK enrolled OVMF enforces unless SecureBootEnable says otherwise.
    tools.run([*argv, "--sb"] if secure_boot else [*argv, "--set-false", "SecureBootEnable"])
