"""Fuzz target `tpm`: the responses the node decodes from its TPM device.

Whatever sits behind /dev/tpmrm0 (a faulty chip, an interposer on the bus)
is a peer. Every response parser gets the input twice, as is and with its
size field made to match (so mutations get past the first check). Property:
`TpmFormatError` or `TpmResponseError` only, and what a parser accepts keeps
its promise (a 32-byte digest, a transient handle, printable text).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from hypothesis import strategies as st

from tests.fuzz.budget import Target, fuzz, replay
from tests.fuzz.mutate import havoc, mutated
from tests.tpm import responses as r
from zosnode.tpm import codec
from zosnode.tpm.errors import TpmFormatError, TpmResponseError

PARSERS: tuple[Callable[[bytes], object], ...] = (
    codec.parse_create_primary, codec.parse_hmac, codec.parse_flush_context,
    codec.parse_manufacturer)


def _sized(data: bytes) -> bytes:
    return data[:2] + struct.pack(">I", len(data)) + data[6:] if len(data) >= 6 else data


def check_tpm(data: bytes) -> None:
    for item in (data, _sized(data)):
        for parse in PARSERS:
            try:
                out = parse(item)
            except TpmResponseError as exc:
                assert 0 < exc.code <= 0xFFFFFFFF and exc.name
                continue
            except TpmFormatError:
                continue
            assert len(item) <= codec.MAX_RESPONSE
            if isinstance(out, codec.Primary):
                assert out.handle >> 24 == 0x80
            elif isinstance(out, bytes):
                assert len(out) == 32
            elif isinstance(out, str):
                assert out.isascii() and out.isprintable()
            else:
                assert out is None and len(item) == 10


TPM = Target("tpm", check_tpm)
SEEDS = [r.create_primary(), r.hmac(), r.flush(), r.manufacturer(), r.error(0x98E),
         r.error(0x922)]

test_tpm_regressions = replay(TPM)
test_tpm_raw = fuzz(TPM, st.binary(max_size=600))
test_tpm_mutated = fuzz(TPM, mutated(SEEDS))
test_tpm_havoc = fuzz(TPM, havoc(SEEDS))
