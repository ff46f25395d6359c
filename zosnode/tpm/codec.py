"""The TPM 2.0 commands the node identity needs (TCG TPM 2.0 Library, Part 3) as bytes:
a strict codec, no I/O. The commands, the template and the errors: docs/identity.md."""

import hashlib
import struct
from dataclasses import dataclass

from zosnode.tpm.errors import TpmFormatError, TpmResponseError, TpmUsageError

ST_NO_SESSIONS, ST_SESSIONS = 0x8001, 0x8002
CC_CREATE_PRIMARY, CC_HMAC, CC_FLUSH_CONTEXT, CC_GET_CAPABILITY = 0x131, 0x155, 0x165, 0x17A
RH_OWNER, RS_PW = 0x40000001, 0x40000009
ALG_HMAC, ALG_KEYEDHASH, ALG_SHA256 = 0x0005, 0x0008, 0x000B
CAP_TPM_PROPERTIES, PT_MANUFACTURER = 6, 0x105  # then PT_VENDOR_STRING_1..4
HEADER = struct.Struct(">HII")  # tag, size, command or response code
MAX_BUFFER = 1024  # TPM2B_MAX_BUFFER, the most TPM2_HMAC takes in one call
MAX_RESPONSE = 4096  # no response of ours comes near; a larger one is refused

# fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth | noDA | sign: derived from
# the owner seed and the template (the same key until TPM2_Clear), it never leaves this TPM.
KEY_ATTRIBUTES = 0x2 | 0x10 | 0x20 | 0x40 | 0x400 | 0x40000
# KDF input too: this key is ours, not any other program's empty-unique HMAC primary.
KEY_UNIQUE = hashlib.sha256(b"zosnode node identity key v1").digest()
PW_SESSION = struct.pack(">IHBH", RS_PW, 0, 0, 0)  # handle, no nonce, attributes, no password

_FMT1 = {0x01: "ASYMMETRIC", 0x02: "ATTRIBUTES", 0x03: "HASH", 0x04: "VALUE", 0x05: "HIERARCHY",
         0x07: "KEY_SIZE", 0x08: "MGF", 0x09: "MODE", 0x0A: "TYPE", 0x0B: "HANDLE", 0x0C: "KDF",
         0x0D: "RANGE", 0x0E: "AUTH_FAIL", 0x0F: "NONCE", 0x10: "PP", 0x12: "SCHEME", 0x15: "SIZE",
         0x16: "SYMMETRIC", 0x17: "TAG", 0x18: "SELECTOR", 0x1A: "INSUFFICIENT", 0x1B: "SIGNATURE",
         0x1C: "KEY", 0x1D: "POLICY_FAIL", 0x1F: "INTEGRITY", 0x20: "TICKET", 0x21: "RESERVED_BITS",
         0x22: "BAD_AUTH", 0x23: "EXPIRED", 0x24: "POLICY_CC", 0x25: "BINDING", 0x26: "CURVE",
         0x27: "ECC_POINT"}
_VER1 = {0x00: "INITIALIZE", 0x01: "FAILURE", 0x03: "SEQUENCE", 0x0B: "PRIVATE", 0x19: "HMAC",
         0x20: "DISABLED", 0x21: "EXCLUSIVE", 0x24: "AUTH_TYPE", 0x25: "AUTH_MISSING",
         0x26: "POLICY", 0x27: "PCR", 0x28: "PCR_CHANGED", 0x2D: "UPGRADE",
         0x2E: "TOO_MANY_CONTEXTS", 0x2F: "AUTH_UNAVAILABLE", 0x30: "REBOOT", 0x31: "UNBALANCED",
         0x42: "COMMAND_SIZE", 0x43: "COMMAND_CODE", 0x44: "AUTHSIZE", 0x45: "AUTH_CONTEXT",
         0x46: "NV_RANGE", 0x47: "NV_SIZE", 0x48: "NV_LOCKED", 0x49: "NV_AUTHORIZATION",
         0x4A: "NV_UNINITIALIZED", 0x4B: "NV_SPACE", 0x4C: "NV_DEFINED", 0x50: "BAD_CONTEXT",
         0x51: "CPHASH", 0x52: "PARENT", 0x53: "NEEDS_TEST", 0x54: "NO_RESULT", 0x55: "SENSITIVE"}
_WARN = {0x01: "CONTEXT_GAP", 0x02: "OBJECT_MEMORY", 0x03: "SESSION_MEMORY", 0x04: "MEMORY",
         0x05: "SESSION_HANDLES", 0x06: "OBJECT_HANDLES", 0x07: "LOCALITY", 0x08: "YIELDED",
         0x09: "CANCELED", 0x0A: "TESTING", 0x20: "NV_RATE", 0x21: "LOCKOUT", 0x22: "RETRY",
         0x23: "NV_UNAVAILABLE", **{0x10 + i: f"REFERENCE_H{i}" for i in range(7)},
         **{0x18 + i: f"REFERENCE_S{i}" for i in range(7)}}
RETRYABLE = frozenset({0x908, 0x90A, 0x922})  # YIELDED, TESTING, RETRY: send the command again


def rc_name(rc: int) -> str:
    """The TCG name of a response code, with the handle, session or parameter it blames."""
    if rc > 0xFFF:
        return f"not a TPM response code 0x{rc:x}"
    if rc & 0x80:  # format 1: an error about one handle, session or parameter
        e, n = rc & 0x3F, (rc >> 8) & 0xF
        base = "TPM_RC_" + _FMT1.get(e, f"0x{0x80 | e:03x}")
        if rc & 0x40:
            return f"{base} (parameter {n})"
        if n:
            return f"{base} ({'session' if n & 8 else 'handle'} {n & 7})"
        return base
    if not rc & 0x100:
        return f"TPM 1.2 code 0x{rc:x}"
    if rc & 0x400:
        return f"vendor code 0x{rc:x}"
    return "TPM_RC_" + (_WARN if rc & 0x800 else _VER1).get(rc & 0x7F, f"0x{rc:03x}")


def _b(data: bytes, limit: int = 0xFFFF) -> bytes:
    if len(data) > limit:
        raise TpmUsageError(f"a TPM2B of {len(data)} bytes exceeds its limit of {limit}")
    return struct.pack(">H", len(data)) + data


def _command(code: int, handles: tuple[int, ...], params: bytes, auth: bool) -> bytes:
    body = b"".join(struct.pack(">I", h) for h in handles)
    if auth:
        body += struct.pack(">I", len(PW_SESSION)) + PW_SESSION
    body += params
    return HEADER.pack(ST_SESSIONS if auth else ST_NO_SESSIONS, HEADER.size + len(body),
                       code) + body


def _handle(handle: int) -> int:
    if not 0 <= handle <= 0xFFFFFFFF:
        raise TpmUsageError(f"handle {handle} is not a 32-bit TPM handle")
    return handle


class _Reader:
    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise TpmFormatError(f"{self.what} response truncated at byte {len(self.data)}")
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def b(self) -> bytes:
        return self.take(self.uint(2))

    def end(self) -> None:
        if self.pos != len(self.data):
            raise TpmFormatError(f"{self.what} response has {len(self.data) - self.pos} "
                                 "bytes of trailing data")


def _response(what: str, data: bytes, handles: int, auth: bool) -> tuple[list[int], _Reader]:
    """The response's handles and a reader over its parameters; raises the TPM's refusal."""
    if len(data) > MAX_RESPONSE:
        raise TpmFormatError(f"{what} response of {len(data)} bytes is larger than any TPM's")
    r = _Reader(data, what)
    tag, size, rc = r.uint(2), r.uint(4), r.uint(4)
    if size != len(data):
        raise TpmFormatError(f"{what} response says {size} bytes but holds {len(data)}")
    if tag not in (ST_NO_SESSIONS, ST_SESSIONS):
        raise TpmFormatError(f"{what} response has an unknown tag 0x{tag:04x}")
    if rc:
        r.end()  # an error response is the header alone
        raise TpmResponseError(what, rc, rc_name(rc))
    if tag != (ST_SESSIONS if auth else ST_NO_SESSIONS):
        raise TpmFormatError(f"{what} response tag 0x{tag:04x} does not match the command's")
    found = [r.uint(4) for _ in range(handles)]
    if not auth:
        return found, r
    params = _Reader(r.take(r.uint(4)), what)
    # The password session's answer: empty nonce, attributes, empty HMAC.
    nonce, _, mac = r.b(), r.uint(1), r.b()
    if nonce or mac:
        raise TpmFormatError(f"{what} response has a password session with a nonce or HMAC")
    r.end()
    return found, params


def create_primary_hmac() -> bytes:
    """TPM2_CreatePrimary of the identity key: keyedHash, HMAC-SHA256, the fixed template."""
    public = (struct.pack(">HHI", ALG_KEYEDHASH, ALG_SHA256, KEY_ATTRIBUTES) + _b(b"")
              + struct.pack(">HH", ALG_HMAC, ALG_SHA256) + _b(KEY_UNIQUE))
    sensitive = _b(_b(b"") + _b(b""))  # no userAuth; no data: the TPM makes the key
    params = sensitive + _b(public) + _b(b"") + struct.pack(">I", 0)  # no outsideInfo, PCRs
    return _command(CC_CREATE_PRIMARY, (RH_OWNER,), params, auth=True)


@dataclass(frozen=True)
class Primary:
    handle: int  # a transient object handle, to be flushed
    name: bytes  # nameAlg || H(public area): the same for the same key


def parse_create_primary(data: bytes) -> Primary:
    (handle,), r = _response("CreatePrimary", data, handles=1, auth=True)
    for _ in range(3):  # outPublic, creationData, creationHash
        r.b()
    r.take(6)  # creationTicket: tag, hierarchy
    r.b()  # creationTicket digest
    name = r.b()
    r.end()
    if handle >> 24 != 0x80:
        raise TpmFormatError(f"CreatePrimary returned 0x{handle:08x}, not a transient handle")
    return Primary(handle, name)


def hmac(handle: int, data: bytes) -> bytes:
    params = _b(data, MAX_BUFFER) + struct.pack(">H", ALG_SHA256)
    return _command(CC_HMAC, (_handle(handle),), params, auth=True)


def parse_hmac(data: bytes) -> bytes:
    _, r = _response("HMAC", data, handles=0, auth=True)
    digest = r.b()
    r.end()
    if len(digest) != 32:
        raise TpmFormatError(f"HMAC returned {len(digest)} bytes, not a SHA-256 digest")
    return digest


def flush_context(handle: int) -> bytes:
    return _command(CC_FLUSH_CONTEXT, (), struct.pack(">I", _handle(handle)), auth=False)


def parse_flush_context(data: bytes) -> None:
    _, r = _response("FlushContext", data, handles=0, auth=False)
    r.end()


def get_manufacturer() -> bytes:
    """TPM2_GetCapability of the manufacturer and the four vendor-string properties."""
    params = struct.pack(">III", CAP_TPM_PROPERTIES, PT_MANUFACTURER, 5)
    return _command(CC_GET_CAPABILITY, (), params, auth=False)


def parse_manufacturer(data: bytes) -> str:
    """'IBM SW TPM': the manufacturer id and the vendor string, runs of blanks made one."""
    _, r = _response("GetCapability", data, handles=0, auth=False)
    r.uint(1)  # moreData: we asked for all we want
    if r.uint(4) != CAP_TPM_PROPERTIES:
        raise TpmFormatError("GetCapability answered about another capability")
    props = dict((r.uint(4), r.take(4)) for _ in range(r.uint(4)))  # (property, value)
    r.end()
    if PT_MANUFACTURER not in props:
        raise TpmFormatError("GetCapability did not return the manufacturer")
    words = [props.get(PT_MANUFACTURER + i, b"") for i in range(5)]
    # Printable ASCII only: this goes to the console and the heartbeat.
    text = ["".join(chr(c) if 0x20 <= c < 0x7F else "?" for c in w.replace(b"\0", b""))
            for w in words]
    return " ".join(f"{text[0]} {''.join(text[1:])}".split())
