"""Canonical CBOR: the one encoding of signed and content-addressed data.

Manifests, roots and flists are hashed or signed as bytes, so each value must
have exactly one encoding. We encode with cbor2's canonical mode (RFC 8949
core deterministic encoding: shortest forms, sorted map keys, definite
lengths) and, when decoding, refuse anything that does not re-encode to the
very same bytes. That single check rejects non-shortest integers, unsorted or
duplicate map keys (they collapse on decode), indefinite lengths, tags and
trailing data.
"""

from __future__ import annotations

from typing import Any

import cbor2

# Types a canonical document may contain; anything else (tags, floats,
# undefined, ...) has no place in our formats.
_ALLOWED = (dict, list, str, bytes, int, bool, type(None))


class CanonicalError(ValueError):
    """The bytes are not one canonical CBOR document of allowed types."""


def dumps(value: Any) -> bytes:
    _check_types(value, 0)
    return cbor2.dumps(value, canonical=True)


def loads(data: bytes, *, max_size: int, max_depth: int = 64) -> Any:
    """Decode one canonical document of at most `max_size` bytes."""
    if len(data) > max_size:
        raise CanonicalError(f"{len(data)} bytes is over the {max_size}-byte cap")
    if not data:
        raise CanonicalError("empty input")
    try:
        value = cbor2.loads(data)
    except Exception as exc:  # noqa: BLE001 - cbor2 raises many types on garbage
        raise CanonicalError(f"not valid CBOR: {exc}") from None
    _check_types(value, 0, max_depth)
    try:
        again = cbor2.dumps(value, canonical=True)
    except Exception as exc:  # noqa: BLE001
        raise CanonicalError(f"cannot re-encode: {exc}") from None
    if again != data:
        raise CanonicalError(
            "not canonical CBOR (trailing data, duplicate or unsorted keys, "
            "or non-shortest encoding)"
        )
    return value


def _check_types(value: Any, depth: int, max_depth: int = 64) -> None:
    if depth > max_depth:
        raise CanonicalError(f"nested deeper than {max_depth}")
    if not isinstance(value, _ALLOWED):
        raise CanonicalError(f"type {type(value).__name__} is not allowed")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise CanonicalError(f"map key of type {type(k).__name__} is not allowed")
            _check_types(v, depth + 1, max_depth)
    elif isinstance(value, list):
        for v in value:
            _check_types(v, depth + 1, max_depth)
