"""Canonical CBOR (RFC 8949 core deterministic encoding): the one encoding of signed data.

Signed bytes need one encoding per value: `loads` refuses what does not re-encode to the
same bytes. First one linear pass over the headers (`_scan`) refuses what must never reach
cbor2: tags (28/29 share values: 135 bytes can expand to a DAG of 2**22 nodes any walk
takes seconds or forever to visit; tag 2 makes an integer of bytes), floats and simple
values but false/true/null, keys neither text nor integers, nesting past the cap, lengths
past the end. Integers: -2**64 .. 2**64-1; `dumps` checks its output the same way."""

from typing import Any

import cbor2

DEPTH = 64  # the default nesting cap


class CanonicalError(ValueError):
    """The bytes are not one canonical CBOR document of allowed types."""


def dumps(value: Any) -> bytes:
    """`value` encoded; what `loads` would refuse (a float, a bignum, ...) is refused."""
    try:
        data = cbor2.dumps(value, canonical=True)
    except Exception as exc:  # noqa: BLE001 - cbor2 raises many types on what it cannot encode
        raise CanonicalError(f"cannot encode: {exc}") from None
    _scan(data, DEPTH)
    return data


def loads(data: bytes, *, max_size: int, max_depth: int = DEPTH) -> Any:
    if len(data) > max_size:
        raise CanonicalError(f"{len(data)} bytes is over the {max_size}-byte cap")
    _scan(data, max_depth)  # empty input is truncated
    try:
        value = cbor2.loads(data)
    except Exception as exc:  # noqa: BLE001 - cbor2 raises many types on garbage
        raise CanonicalError(f"not valid CBOR: {exc}") from None
    try:
        again = cbor2.dumps(value, canonical=True)
    except Exception as exc:  # noqa: BLE001
        raise CanonicalError(f"cannot re-encode: {exc}") from None
    if again != data:
        raise CanonicalError("not canonical CBOR (unsorted or duplicate keys, non-shortest form)")
    return value


_SIMPLE_OK = (0xF4, 0xF5, 0xF6)  # initial bytes of the simple values allowed: false, true, null


def _scan(data: bytes, max_depth: int) -> None:
    end = len(data)
    pos = 0
    # Per open container: items still to read, and whether it is a map.
    left = [1]
    is_map = [False]
    while left:
        if left[-1] == 0:
            left.pop()
            is_map.pop()
            continue
        key = is_map[-1] and left[-1] % 2 == 0
        left[-1] -= 1
        if pos >= end:
            raise CanonicalError("not valid CBOR: truncated")
        initial = data[pos]
        pos += 1
        major, arg = initial >> 5, initial & 0x1F
        if arg >= 24:
            if arg >= 28:
                if arg == 31 and major in (2, 3, 4, 5):
                    raise CanonicalError("not canonical CBOR: indefinite length")
                raise CanonicalError(f"not valid CBOR: reserved header byte 0x{initial:02x}")
            width = 1 << (arg - 24)
            if pos + width > end:
                raise CanonicalError("not valid CBOR: truncated")
            arg = int.from_bytes(data[pos:pos + width], "big")
            pos += width
        if key and major not in (0, 1, 3):
            raise CanonicalError("a map key must be text or an integer")
        if major <= 1:
            continue
        if major <= 3:
            if arg > end - pos:
                raise CanonicalError("not valid CBOR: truncated")
            pos += arg
        elif major <= 5:
            count = arg if major == 4 else 2 * arg
            if count > end - pos:  # every item takes at least one byte
                raise CanonicalError("not valid CBOR: truncated")
            if count and len(left) > max_depth:  # its items would sit deeper
                raise CanonicalError(f"nested deeper than {max_depth}")
            left.append(count)
            is_map.append(major == 5)
        elif major == 6:
            raise CanonicalError(f"tag {arg} is not allowed")
        elif initial not in _SIMPLE_OK:
            raise CanonicalError(f"float or simple value 0x{initial:02x} is not allowed")
    if pos != end:
        raise CanonicalError("not canonical CBOR: trailing data after the document")
