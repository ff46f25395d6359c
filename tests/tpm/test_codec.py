"""The TPM codec byte by byte: known commands, known responses, every refusal typed."""

from __future__ import annotations

import struct

import pytest

from tests.tpm import responses as r
from zosnode.tpm import codec, device
from zosnode.tpm.errors import TpmError, TpmFormatError, TpmResponseError, TpmUsageError

PW = "40000009 0000 00 0000"  # TPM_RS_PW, empty nonce, attributes 0, empty password


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def test_create_primary_command() -> None:
    unique = codec.KEY_UNIQUE.hex()
    assert codec.create_primary_hmac() == h(
        "8002 00000059 00000131"  # sessions, 89 bytes, TPM_CC_CreatePrimary
        "40000001"  # TPM_RH_OWNER
        f"00000009 {PW}"
        "0004 0000 0000"  # inSensitive: no userAuth, no data
        "0030 0008 000b 00040472"  # inPublic: keyedHash, nameAlg SHA-256, attributes
        "0000 0005 000b"  # no authPolicy; scheme HMAC with SHA-256
        f"0020 {unique}"  # unique: our label's digest
        "0000 00000000")  # no outsideInfo, no PCR selection
    attrs = codec.KEY_ATTRIBUTES
    # fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth, noDA, sign; never
    # restricted, decrypt or encryptedDuplication.
    assert [b for b in range(32) if attrs >> b & 1] == [1, 4, 5, 6, 10, 18]


def test_hmac_flush_and_capability_commands() -> None:
    assert codec.hmac(0x80000001, b"abc") == h(
        f"8002 00000022 00000155 80000001 00000009 {PW} 0003 616263 000b")
    assert codec.flush_context(0x80000001) == h("8001 0000000e 00000165 80000001")
    assert codec.get_manufacturer() == h("8001 00000016 0000017a 00000006 00000105 00000005")
    assert len(codec.hmac(1, b"x" * codec.MAX_BUFFER)) == 10 + 4 + 4 + 9 + 2 + 1024 + 2


@pytest.mark.parametrize("make", [lambda: codec.hmac(1, b"x" * (codec.MAX_BUFFER + 1)),
                                  lambda: codec.hmac(-1, b""),
                                  lambda: codec.flush_context(1 << 32)])
def test_commands_we_cannot_encode_are_our_bug(make: object) -> None:
    with pytest.raises(TpmUsageError):
        make()  # type: ignore[operator]


def test_parse_known_responses() -> None:
    primary = codec.parse_create_primary(r.create_primary())
    assert primary == codec.Primary(r.HANDLE, r.NAME)
    assert codec.parse_hmac(r.hmac()) == r.DIGEST
    codec.parse_flush_context(r.flush())  # no exception, no value
    assert codec.parse_manufacturer(r.manufacturer()) == "IBM SW TPM"
    # Non-printable bytes from the device never reach the console as such.
    assert codec.parse_manufacturer(r.manufacturer((b"\x1b[2J", b"\xffAB\0"))) == "?[2J ?AB"


@pytest.mark.parametrize(("rc", "name"), [
    (0x98E, "TPM_RC_AUTH_FAIL (session 1)"),
    (0x1C4, "TPM_RC_VALUE (parameter 1)"),
    (0x184, "TPM_RC_VALUE (handle 1)"),
    (0x08B, "TPM_RC_HANDLE"),
    (0x101, "TPM_RC_FAILURE"),
    (0x100, "TPM_RC_INITIALIZE"),
    (0x143, "TPM_RC_COMMAND_CODE"),
    (0x902, "TPM_RC_OBJECT_MEMORY"),
    (0x922, "TPM_RC_RETRY"),
    (0x921, "TPM_RC_LOCKOUT"),
    (0x912, "TPM_RC_REFERENCE_H2"),
    (0x0BF, "TPM_RC_0x0bf"),
    (0x01E, "TPM 1.2 code 0x1e"),
    (0x500, "vendor code 0x500"),
    (0x12345, "not a TPM response code 0x12345"),
])
def test_response_codes_are_named(rc: int, name: str) -> None:
    with pytest.raises(TpmResponseError) as info:
        codec.parse_hmac(r.error(rc))
    assert (info.value.code, info.value.name, info.value.command) == (rc, name, "HMAC")
    assert name in str(info.value)


@pytest.mark.parametrize("data", [
    b"",
    r.hmac()[:9],  # shorter than a header
    r.hmac()[:-1],  # size field says one byte more
    r.hmac() + b"\0",  # trailing data
    r.error(0x101) + b"\0\0",
    struct.pack(">HII", 0x8001, 12, 0x101) + b"\0\0",  # an error response with a body
    struct.pack(">HII", 0x00C4, 10, 0),  # a TPM 1.2 tag
    r.response(b"\x00\x20" + r.DIGEST),  # no session area where the command had one
    r.hmac(auth=b"\x00\x01\x55\x00\x00\x00"),  # a nonce in a password session
    r.hmac(auth=b"\x00\x00\x00\x00\x01\x55"),  # an HMAC in a password session
    r.hmac(auth=r.PW_OK + b"\0"),  # after the session
    r.hmac(auth=r.PW_OK[:-1]),  # session area cut
    r.hmac(digest=r.DIGEST[:20]),  # not a SHA-256 digest
    r.response(b"\x00\x21" + r.DIGEST, auth=r.PW_OK),  # TPM2B longer than its parameters
    r.hmac(r.DIGEST * 200),  # larger than any TPM response
])
def test_malformed_hmac_responses_are_refused(data: bytes) -> None:
    with pytest.raises(TpmFormatError):
        codec.parse_hmac(data)


@pytest.mark.parametrize(("parse", "data"), [
    (codec.parse_create_primary, r.create_primary(extra=b"\0")),
    (codec.parse_create_primary, r.create_primary(handle=0x40000001)),  # not transient
    (codec.parse_create_primary, r.create_primary()[:40]),
    (codec.parse_flush_context, r.response(b"\0")),
    (codec.parse_flush_context, r.hmac()),  # a sessions tag for a command without
    (codec.parse_manufacturer, r.manufacturer(capability=5)),
    (codec.parse_manufacturer, r.manufacturer(words=())),
    (codec.parse_manufacturer, r.manufacturer()[:-2]),
])
def test_malformed_other_responses_are_refused(parse: object, data: bytes) -> None:
    with pytest.raises(TpmFormatError):
        parse(data)  # type: ignore[operator]


def test_derive_creates_uses_and_flushes_the_key() -> None:
    tpm = r.Scripted(r.create_primary(handle=0x80000002), r.hmac(), r.flush())
    assert device.derive(tpm, b"label") == r.DIGEST
    assert tpm.sent == [codec.create_primary_hmac(), codec.hmac(0x80000002, b"label"),
                        codec.flush_context(0x80000002)]


def test_the_key_is_flushed_when_the_hmac_fails() -> None:
    tpm = r.Scripted(r.create_primary(), r.error(0x98E), r.error(0x1C4))
    with pytest.raises(TpmResponseError, match="AUTH_FAIL"):  # the first failure, not the flush's
        device.derive(tpm, b"label")
    assert tpm.sent[-1] == codec.flush_context(r.HANDLE)


def test_retry_warnings_are_retried_a_bounded_number_of_times() -> None:
    tpm = r.Scripted(r.error(0x922), r.error(0x90A), r.hmac())
    assert device.call(tpm, codec.hmac(1, b""), codec.parse_hmac) == r.DIGEST
    tpm = r.Scripted(*[r.error(0x922)] * (device.RETRIES + 1))
    with pytest.raises(TpmResponseError, match="RETRY"):
        device.call(tpm, codec.hmac(1, b""), codec.parse_hmac)
    assert len(tpm.sent) == device.RETRIES + 1
    tpm = r.Scripted(r.error(0x98E), r.hmac())  # a refusal is not retried
    with pytest.raises(TpmResponseError):
        device.call(tpm, codec.hmac(1, b""), codec.parse_hmac)
    assert len(tpm.sent) == 1


def test_errors_are_one_type() -> None:
    for cls in (TpmFormatError, TpmResponseError, TpmUsageError):
        assert issubclass(cls, TpmError)
