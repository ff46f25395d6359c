"""Errors of the TPM layer: our malformed command, the TPM's answer, its malformed bytes."""

from zosnode.errors import UsageError, ZosError


class TpmError(ZosError):
    """Base of every TPM error."""


class TpmUsageError(TpmError, UsageError):
    """We asked the codec for a command it cannot encode (our bug)."""


class TpmFormatError(TpmError):
    """The TPM (or whatever sits behind the device) sent bytes that are not a valid response."""


class TpmResponseError(TpmError):
    """The TPM refused a well-formed command with a response code."""

    def __init__(self, command: str, code: int, name: str) -> None:
        super().__init__(f"TPM refused {command}: {name} (0x{code:03x})")
        self.command, self.code, self.name = command, code, name


class TpmDeviceError(TpmError):
    """The device could not be opened, written or read in time."""
