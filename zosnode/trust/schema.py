"""Typed reads of decoded CBOR maps, refusing what the format does not allow.

A decoded document is a plain dict from a peer; `Fields` takes values out of
it with their type and range checked, so the dataclasses downstream are only
ever built from well-typed values. Unknown field names are refused unless
they start with "x-": that prefix marks a non-critical extension a verifier
may ignore; every other unknown field is critical (TUF's rule that a client
must not silently skip what it does not understand).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from zosnode import canonical
from zosnode.trust.errors import MalformedError

EXTENSION_PREFIX = "x-"
MAX_INT = 2**63 - 1


def versioned(
    data: bytes, where: str, known: Collection[str], *, spec: int, max_size: int, max_depth: int
) -> Fields:
    """The fields of a document in format version `spec`: canonical CBOR within the
    caps, a map of known fields, and a "spec" this code reads (no other)."""
    try:
        value = canonical.loads(data, max_size=max_size, max_depth=max_depth)
    except canonical.CanonicalError as exc:
        raise MalformedError(f"{where}: {exc}") from None
    fields = Fields(value, where, known)
    got = fields.integer("spec")
    if got != spec:
        raise MalformedError(f"{where}: spec version {got} is not supported (want {spec})")
    return fields


class Fields:
    def __init__(self, value: Any, where: str, known: Collection[str]) -> None:
        if not isinstance(value, dict):
            raise MalformedError(f"{where}: expected a map, got {type(value).__name__}")
        for key in value:
            if not isinstance(key, str):
                raise MalformedError(f"{where}: map key {key!r} is not a string")
            if key not in known and not key.startswith(EXTENSION_PREFIX):
                raise MalformedError(f"{where}: unknown critical field {key!r}")
        self._map: dict[str, Any] = value
        self._where = where

    def _get(self, name: str) -> Any:
        try:
            return self._map[name]
        except KeyError:
            raise MalformedError(f"{self._where}: missing field {name!r}") from None

    def _bad(self, name: str, expected: str) -> MalformedError:
        got = type(self._map.get(name)).__name__
        return MalformedError(f"{self._where}.{name}: expected {expected}, got {got}")

    def integer(self, name: str, lo: int = 0, hi: int = MAX_INT) -> int:
        value = self._get(name)
        # bool is an int subclass; a CBOR true is not a number.
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._bad(name, "an integer")
        if not lo <= value <= hi:
            raise MalformedError(f"{self._where}.{name}: {value} is outside {lo}..{hi}")
        return value

    def text(self, name: str) -> str:
        value = self._get(name)
        if not isinstance(value, str):
            raise self._bad(name, "a text string")
        return value

    def blob(self, name: str) -> bytes:
        value = self._get(name)
        if not isinstance(value, bytes):
            raise self._bad(name, "a byte string")
        return value

    def flag(self, name: str) -> bool:
        value = self._get(name)
        if not isinstance(value, bool):
            raise self._bad(name, "a boolean")
        return value

    def array(self, name: str) -> list[Any]:
        value = self._get(name)
        if not isinstance(value, list):
            raise self._bad(name, "an array")
        return value

    def str_list(self, name: str) -> tuple[str, ...]:
        items = self.array(name)
        if not all(isinstance(item, str) for item in items):
            raise MalformedError(f"{self._where}.{name}: expected an array of text strings")
        return tuple(items)

    def optional_str_list(self, name: str) -> tuple[str, ...] | None:
        if self._get(name) is None:
            return None
        return self.str_list(name)

    def mapping(self, name: str) -> dict[Any, Any]:
        value = self._get(name)
        if not isinstance(value, dict):
            raise self._bad(name, "a map")
        return value

    def str_map(self, name: str) -> Mapping[str, str]:
        value = self.mapping(name)
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise MalformedError(f"{self._where}.{name}: expected a map of text to text")
        return value
