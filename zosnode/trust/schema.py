"""Typed reads of a peer's decoded CBOR maps: dataclasses are only built from well-typed values.
Unknown fields are refused unless "x-" (non-critical): TUF's rule, never skip what is not known."""

from collections.abc import Collection
from typing import Any, TypeVar

from zosnode import canonical
from zosnode.trust.errors import MalformedError

EXTENSION_PREFIX = "x-"
MAX_INT = 2**63 - 1
_EXPECTED = {int: "an integer", str: "a text string", bytes: "a byte string",
             bool: "a boolean", list: "an array", dict: "a map"}
T = TypeVar("T")


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

    def get(self, name: str, kind: type[T]) -> T:
        if name not in self._map:
            raise MalformedError(f"{self._where}: missing field {name!r}")
        value = self._map[name]
        # bool is an int subclass; a CBOR true is not a number.
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
            got = type(value).__name__
            raise MalformedError(f"{self._where}.{name}: expected {_EXPECTED[kind]}, got {got}")
        return value

    def integer(self, name: str) -> int:
        value = self.get(name, int)
        if not 0 <= value <= MAX_INT:
            raise MalformedError(f"{self._where}.{name}: {value} is outside 0..{MAX_INT}")
        return value

    def str_list(self, name: str) -> tuple[str, ...]:
        items = self.get(name, list)
        if not all(isinstance(item, str) for item in items):
            raise MalformedError(f"{self._where}.{name}: expected an array of text strings")
        return tuple(items)

    def optional_str_list(self, name: str) -> tuple[str, ...] | None:
        return None if self.get(name, object) is None else self.str_list(name)

    def str_map(self, name: str) -> dict[str, str]:
        value = self.get(name, dict)
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise MalformedError(f"{self._where}.{name}: expected a map of text to text")
        return value


def load(data: bytes, where: str, known: Collection[str], *, max_size: int,
         max_depth: int) -> Fields:
    try:
        value = canonical.loads(data, max_size=max_size, max_depth=max_depth)
    except canonical.CanonicalError as exc:
        raise MalformedError(f"{where}: {exc}") from None
    return Fields(value, where, known)


def versioned(data: bytes, where: str, known: Collection[str], *, spec: int, max_size: int,
              max_depth: int) -> Fields:
    fields = load(data, where, known, max_size=max_size, max_depth=max_depth)
    got = fields.integer("spec")
    if got != spec:
        raise MalformedError(f"{where}: spec version {got} is not supported (want {spec})")
    return fields
