"""Did the firmware verify what it booted? Secure Boot state from the EFI variables: "on" (the
only state meaning a verified boot chain), "off", "bios" or "unknown" (docs/boot-trust.md)."""

import errno
import functools
import os
from pathlib import Path

from zosnode.agent import pid1

EFI_DIR = Path("/sys/firmware/efi")
EFIVARS = EFI_DIR / "efivars"
# EFI_GLOBAL_VARIABLE's SecureBoot: 4 bytes of attributes, then one byte, 1 = enforcing.
SECURE_BOOT_VAR = "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"


def state(efi: bool, efivars_mounted: bool, value: bytes | None) -> str:
    """The state from what the system shows (`value`: the variable's bytes, or None). Pure."""
    if not efi:
        return "bios"
    if not efivars_mounted:
        return "unknown"
    if value is None:
        return "off"  # firmware without Secure Boot support has no such variable
    return {0: "off", 1: "on"}.get(value[4], "unknown") if len(value) == 5 else "unknown"


def read(mount: bool) -> str:
    """This machine's state; with `mount` (PID 1 only) efivarfs is mounted first if needed."""
    if not EFI_DIR.is_dir():
        return "bios"
    mounted = os.path.ismount(EFIVARS)
    if not mounted and mount and EFIVARS.is_dir():
        flags = pid1.MS_RDONLY | pid1.MS_NOSUID | pid1.MS_NODEV | pid1.MS_NOEXEC
        mounted = pid1.mount("efivarfs", EFIVARS, "efivarfs", flags) in (0, errno.EBUSY)
    if not mounted:
        return state(True, False, None)
    try:
        return state(True, True, (EFIVARS / SECURE_BOOT_VAR).read_bytes())
    except FileNotFoundError:
        return state(True, True, None)
    except OSError:
        return "unknown"


@functools.cache
def node_state() -> str:
    """Read once per boot: Secure Boot cannot change while the node runs."""
    return read(mount=os.getpid() == 1)
