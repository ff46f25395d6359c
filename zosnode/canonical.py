"""Canonical CBOR, the one encoding of signed data: our own codec, one pass each way.

`loads` refuses any document `dumps` would not write byte for byte (RFC 8949 preferred form,
keys in RFC 7049 canonical order: cbor2's `canonical=True`, which signed every release so far)
and, before building anything, tags (28/29 let 135 bytes expand to 2**22 nodes), floats and
simple values but false/true/null, keys neither text nor integers, integers past 64 bits,
nesting past the cap, lengths past the end. No native parser of a peer's bytes sits in the
node; tests/fuzz/test_canonical.py holds this one to cbor2 both ways."""

from collections.abc import Iterator
from typing import Any

DEPTH = 64  # the default nesting cap
_SHORTEST = (24, 1 << 8, 1 << 16, 1 << 32)  # the least argument a 1-, 2-, 4-, 8-byte head may carry
_SIMPLE = {0xF4: False, 0xF5: True, 0xF6: None}


class CanonicalError(ValueError):
    """The bytes are not one canonical CBOR document of allowed types."""


def loads(data: bytes, *, max_size: int, max_depth: int = DEPTH) -> Any:
    if len(data) > max_size:
        raise CanonicalError(f"{len(data)} bytes is over the {max_size}-byte cap")
    data = bytes(data)
    value, pos = _item(data, 0, max_depth)
    if pos != len(data):
        raise CanonicalError("not canonical CBOR: trailing data after the document")
    return value


def _item(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    """The value at `pos` and the position after it; `depth` more non-empty containers may open."""
    if pos >= len(data):
        raise CanonicalError("not valid CBOR: truncated")
    initial, pos = data[pos], pos + 1
    if initial < 24:  # an integer 0..23 in the head byte: the most common item, first
        return initial, pos
    major, arg = initial >> 5, initial & 0x1F
    if initial in _SIMPLE:
        return _SIMPLE[initial], pos
    if major == 7 and initial < 0xFC:
        raise CanonicalError(f"float or simple value 0x{initial:02x} is not allowed")
    if arg >= 24:
        if arg >= 28:
            if arg == 31 and 2 <= major <= 5:
                raise CanonicalError("not canonical CBOR: indefinite length")
            raise CanonicalError(f"not valid CBOR: reserved header byte 0x{initial:02x}")
        end = pos + (1 << (arg - 24))
        if end > len(data):
            raise CanonicalError("not valid CBOR: truncated")
        arg, pos = int.from_bytes(data[pos:end], "big"), end
        if arg < _SHORTEST[(initial & 0x1F) - 24]:
            raise CanonicalError("not canonical CBOR: a head not in its shortest form")
    if major <= 1:
        return (-1 - arg if major else arg), pos
    if major <= 3:
        end = pos + arg
        if end > len(data):
            raise CanonicalError("not valid CBOR: truncated")
        if major == 2:
            return data[pos:end], end
        try:
            return data[pos:end].decode(), end
        except UnicodeDecodeError:
            raise CanonicalError("not valid CBOR: text that is not UTF-8") from None
    if major == 6:
        raise CanonicalError(f"tag {arg} is not allowed")
    if (2 * arg if major == 5 else arg) > len(data) - pos:  # every item takes a byte at least
        raise CanonicalError("not valid CBOR: truncated")
    if arg and depth == 0:
        raise CanonicalError("nested deeper than the cap")
    if major == 4:
        items: list[Any] = [None] * arg
        for i in range(arg):
            items[i], pos = _item(data, pos, depth - 1)
        return items, pos
    out: dict[Any, Any] = {}
    last = b""
    for _ in range(arg):
        start = pos
        key, pos = _item(data, pos, depth - 1)
        if type(key) not in (str, int):
            raise CanonicalError("a map key must be text or an integer")
        raw = data[start:pos]
        if (len(raw), raw) <= (len(last), last):
            raise CanonicalError("not canonical CBOR (unsorted or duplicate keys)")
        last = raw
        out[key], pos = _item(data, pos, depth - 1)
    return out, pos


def dumps(value: Any) -> bytes:
    """`value` encoded; what `loads` would refuse (a float, a bignum, ...) is refused."""
    out = bytearray()
    _put(out, value, DEPTH)
    return bytes(out)


def _head(major: int, arg: int) -> bytes:
    if arg < 24:
        return bytes((major << 5 | arg,))
    for code, width in enumerate((1, 2, 4, 8), 24):
        if arg >> 8 * width == 0:
            return bytes((major << 5 | code,)) + arg.to_bytes(width, "big")
    raise CanonicalError(f"cannot encode: {arg if major == 0 else -1 - arg} is out of range")


def _put(out: bytearray, value: Any, depth: int) -> None:
    if value is None or value is True or value is False:
        out.append(0xF6 if value is None else 0xF5 if value else 0xF4)
    elif isinstance(value, int):
        out += _head(0, value) if value >= 0 else _head(1, -1 - value)
    elif isinstance(value, (bytes, bytearray)):
        out += _head(2, len(value)) + value
    elif isinstance(value, str):
        try:
            raw = value.encode()
        except UnicodeEncodeError:  # a lone surrogate (JSON "\ud800", say)
            raise CanonicalError("cannot encode text that is not Unicode scalars") from None
        out += _head(3, len(raw)) + raw
    elif isinstance(value, (list, tuple, dict)):
        if value and depth == 0:
            raise CanonicalError("cannot encode: nested deeper than the cap")
        out += _head(5 if isinstance(value, dict) else 4, len(value))
        if isinstance(value, dict):  # keys by (length, bytes)
            for _, key, item in sorted([(len(k), k, value[i]) for i, k in _keys(value)]):
                out += key
                _put(out, item, depth - 1)
        else:
            for item in value:
                _put(out, item, depth - 1)
    else:
        raise CanonicalError(f"cannot encode a {type(value).__name__}")


def _keys(value: dict[Any, Any]) -> Iterator[tuple[Any, bytes]]:
    for key in value:
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            raise CanonicalError("cannot encode: a map key must be text or an integer")
        yield key, dumps(key)
