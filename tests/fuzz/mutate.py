"""Input strategies shared by the fuzz targets: byte mutations and CBOR trees.

`mutated(seeds)` takes valid inputs and damages them the way a fuzzer does
(bit flips, interesting bytes, inserts, deletes, duplicated and spliced
ranges, truncation), so most inputs get past the first length or magic check
and reach the deeper parsing. `cbor_mutated(seeds)` works one level up for
CBOR documents: it replaces one node of the decoded tree by a value of
another type or an edge value (a boolean where an integer belongs, a float, a
tag, a bignum, a key that is not text) and re-encodes canonically, so the
input passes the canonical-CBOR gate and tests the schema behind it.

Each comes in two speeds. The plain strategies make every choice through
hypothesis (one input per example, the best shrinking). `havoc(seeds)` and
`cbor_havoc(seeds)` make hypothesis draw only a seed for a `random.Random`
that then makes `per_example` inputs with the very same mutation code: about
a millisecond of hypothesis per example on the build machine is then shared
by many inputs, so cheap targets see ten times as many. A failing input is
saved as bytes by the harness either way, so weaker shrinking costs little.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import cbor2
from hypothesis import strategies as st

T = TypeVar("T")

# Bytes that mean something to the formats we parse: CBOR simple values,
# floats, tags and indefinite lengths; sign and width edges; HTTP separators.
INTERESTING = (
    0x00, 0x01, 0x7F, 0x80, 0xFF, 0x17, 0x18, 0x19, 0x1A, 0x1B, 0x1F,
    0x3F, 0x5F, 0x9F, 0xBF, 0xC0, 0xC2, 0xD8, 0xF4, 0xF5, 0xF6, 0xF7, 0xF9, 0xFB,
    0x0A, 0x0D, 0x20, 0x2C, 0x2F, 0x3A, 0x3B,
)
_EDGE_INTS = (0, 1, -1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**63,
              2**64 - 1, 2**64, -(2**63), -(2**63) - 1, -(2**64), -(2**64) - 1)
_LEAVES: tuple[Any, ...] = (True, False, None, 0.0, 1.0, -0.0, float("inf"), b"", "",
                            cbor2.CBORSimpleValue(16), cbor2.undefined)
_TAGS = (0, 1, 2, 3, 24, 28, 29, 256, 55799)


class Choices(Protocol):
    """Where the mutators get their choices: hypothesis, or a seeded Random."""

    def integer(self, lo: int, hi: int) -> int: ...

    def choice(self, options: Sequence[T]) -> T: ...

    def blob(self, max_size: int) -> bytes: ...


class _Drawn:
    def __init__(self, draw: st.DrawFn) -> None:
        self._draw = draw

    def integer(self, lo: int, hi: int) -> int:
        return self._draw(st.integers(lo, hi))

    def choice(self, options: Sequence[T]) -> T:
        return options[self._draw(st.integers(0, len(options) - 1))]

    def blob(self, max_size: int) -> bytes:
        return self._draw(st.binary(max_size=max_size))


class _Random:
    def __init__(self, seed: int) -> None:
        self._rnd = random.Random(seed)

    def integer(self, lo: int, hi: int) -> int:
        return self._rnd.randint(lo, hi)

    def choice(self, options: Sequence[T]) -> T:
        return options[self._rnd.randrange(len(options))]

    def blob(self, max_size: int) -> bytes:
        return self._rnd.randbytes(self._rnd.randint(0, max_size))


# --- bytes ----------------------------------------------------------------


def mutate_bytes(data: bytes, seeds: Sequence[bytes], c: Choices) -> bytes:
    n = len(data)
    op = c.integer(0, 7)
    at = c.integer(0, max(n - 1, 0))
    if op == 0 and n:  # flip one bit
        out = bytearray(data)
        out[at] ^= 1 << c.integer(0, 7)
        return bytes(out)
    if op == 1 and n:  # overwrite with an interesting byte
        out = bytearray(data)
        out[at] = c.choice(INTERESTING)
        return bytes(out)
    if op == 2:  # insert a few bytes
        return data[:at] + (c.blob(8) or b"\0") + data[at:]
    if op == 3 and n:  # delete a range
        return data[:at] + data[at + c.integer(1, min(16, n - at)):]
    if op == 4 and n:  # duplicate a range in place
        length = c.integer(1, min(64, n - at))
        return data[:at] + data[at:at + length] * 2 + data[at + length:]
    if op == 5:  # truncate
        return data[:at]
    if op == 6 and n:  # overwrite with a width edge, either byte order
        width = c.choice((1, 2, 4, 8))
        value = c.choice((0, 1, (1 << (8 * width)) - 1, 1 << (8 * width - 1)))
        edge = value.to_bytes(width, "big" if c.integer(0, 1) else "little")
        return data[:at] + edge + data[at + width:]
    other = c.choice(seeds)  # splice: our head, another seed's tail
    return data[:at] + other[c.integer(0, len(other)):]


def _mutated_with(seeds: Sequence[bytes], max_ops: int, c: Choices) -> bytes:
    data = c.choice(seeds)
    for _ in range(c.integer(1, max_ops)):
        data = mutate_bytes(data, seeds, c)
    return data


def mutated(seeds: Sequence[bytes], max_ops: int = 4) -> st.SearchStrategy[bytes]:
    """One mutated seed per example, every choice made by hypothesis."""
    pool = _check(seeds)

    @st.composite
    def strategy(draw: st.DrawFn) -> bytes:
        return _mutated_with(pool, max_ops, _Drawn(draw))

    return strategy()


def havoc(seeds: Sequence[bytes], max_ops: int = 6,
          per_example: int = 32) -> st.SearchStrategy[tuple[bytes, ...]]:
    """`per_example` mutated seeds per example, from one drawn Random seed."""
    pool = _check(seeds)
    return _batches(lambda c: _mutated_with(pool, max_ops, c), per_example)


def _check(seeds: Sequence[bytes]) -> list[bytes]:
    if not seeds:
        raise ValueError("a mutation strategy needs at least one seed")
    return list(seeds)


def _batches(make: Callable[[Choices], bytes],
             per_example: int) -> st.SearchStrategy[tuple[bytes, ...]]:
    def batch(seed: int) -> tuple[bytes, ...]:
        c = _Random(seed)
        return tuple(make(c) for _ in range(per_example))

    return st.integers(0, 2**64 - 1).map(batch)


# --- CBOR trees -------------------------------------------------------------


def hostile_value(c: Choices, depth: int = 0) -> Any:
    """A value canonical CBOR may carry, or one it must refuse (float, tag, ...)."""
    kind = c.integer(0, 9 if depth < 2 else 6)
    if kind == 0:
        return c.choice(_LEAVES)
    if kind == 1:
        return c.choice(_EDGE_INTS)
    if kind == 2:
        return c.integer(-(2**70), 2**70)
    if kind == 3:
        return c.blob(40)
    if kind == 4:
        return c.blob(12).decode("latin-1")
    if kind == 5:
        return cbor2.CBORTag(c.choice(_TAGS), c.choice((b"\x01", 3, "x", [], b"")))
    if kind == 6:
        return c.integer(0, 3)
    if kind <= 8:
        return [hostile_value(c, depth + 1) for _ in range(c.integer(0, 4))]
    keys = ("a", "", "x-ext", 0, -1, "version", "spec")
    return {c.choice(keys): hostile_value(c, depth + 1) for _ in range(c.integer(0, 3))}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(_paths(v, (*prefix, i)))
    elif isinstance(value, dict):
        for k, v in value.items():
            out.extend(_paths(v, (*prefix, k)))
    return out


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, list):
        out = list(value)
        out[head] = _replace(value[head], rest, new)
        return out
    out_map = dict(value)
    out_map[head] = _replace(value[head], rest, new)
    return out_map


def _confused(value: Any, c: Choices) -> Any:
    """The value an over-lenient decoder would take for `value`."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        if value in (0, 1):
            return bool(value)
        return c.choice((float(value), value + 1, -value, True, cbor2.CBORTag(2, b"\x01")))
    if isinstance(value, bytes):
        return c.choice((value.hex(), list(value), value + b"\0", value[:-1]))
    if isinstance(value, str):
        return c.choice((value.encode(), value + "\0", value.upper(), [value]))
    if isinstance(value, list):
        return c.choice((dict(enumerate(value)), value[:1], value + value[-1:], None))
    if isinstance(value, dict):
        return c.choice((list(value.items()), list(value), None))
    return c.choice((0, False, b""))


def mutate_tree(tree: Any, c: Choices) -> Any:
    path = c.choice(_paths(tree))
    parent: Any = tree
    for p in path[:-1]:
        parent = parent[p]
    how = c.integer(0, 5)
    if how == 0 and path and isinstance(parent, dict):  # rename a key
        key = path[-1]
        new_key = c.choice((0, 1, -1, "", "x-ext", key + "s" if isinstance(key, str) else "k"))
        renamed = {(new_key if k == key else k): v for k, v in parent.items()}
        return _replace(tree, path[:-1], renamed)
    if how == 1 and path:  # drop an element or a field
        if isinstance(parent, list):
            return _replace(tree, path[:-1], [v for i, v in enumerate(parent) if i != path[-1]])
        return _replace(tree, path[:-1], {k: v for k, v in parent.items() if k != path[-1]})
    if how == 2 and path and isinstance(parent, list):  # duplicate an element
        i = path[-1]
        return _replace(tree, path[:-1], [*parent[:i + 1], parent[i], *parent[i + 1:]])
    current = parent[path[-1]] if path else tree
    if how <= 3:
        return _replace(tree, path, _confused(current, c))
    return _replace(tree, path, hostile_value(c))


def encode_any(value: Any) -> bytes:
    """Canonical CBOR when cbor2 can make it, else cbor2's plain encoding."""
    try:
        return bytes(cbor2.dumps(value, canonical=True))
    except Exception:  # noqa: BLE001 - e.g. a float map key; fall back
        return bytes(cbor2.dumps(value))


def _cbor_with(trees: Sequence[Any], c: Choices) -> bytes:
    tree = c.choice(trees)
    for _ in range(c.integer(1, 3)):
        tree = mutate_tree(tree, c)
    return encode_any(tree)


def cbor_mutated(seeds: Sequence[bytes]) -> st.SearchStrategy[bytes]:
    """Schema-level mutations of CBOR documents (seeds are their encodings)."""
    trees = [cbor2.loads(s) for s in _check(seeds)]

    @st.composite
    def strategy(draw: st.DrawFn) -> bytes:
        return _cbor_with(trees, _Drawn(draw))

    return strategy()


def cbor_havoc(seeds: Sequence[bytes],
               per_example: int = 16) -> st.SearchStrategy[tuple[bytes, ...]]:
    trees = [cbor2.loads(s) for s in _check(seeds)]
    return _batches(lambda c: _cbor_with(trees, c), per_example)


def cbor_documents() -> st.SearchStrategy[bytes]:
    """Arbitrary small CBOR documents, canonically encoded when possible."""

    @st.composite
    def strategy(draw: st.DrawFn) -> bytes:
        return encode_any(hostile_value(_Drawn(draw)))

    return strategy()
