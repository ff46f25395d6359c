"""Input strategies shared by the fuzz targets: byte mutations and CBOR trees.

`mutated(seeds)` takes valid inputs and damages them the way a fuzzer does
(bit flips, interesting bytes, inserts, deletes, duplicated and spliced
ranges, truncation), so most inputs get past the first length or magic check
and reach the deeper parsing. `cbor_mutated(seeds)` works one level up for
CBOR documents: it replaces one node of the decoded tree by a value of
another type or an edge value (a boolean where an integer belongs, a float, a
tag, a bignum, a key that is not text) and re-encodes canonically, so the
input passes the canonical-CBOR gate and tests the schema behind it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cbor2
from hypothesis import strategies as st

# Bytes that mean something to the formats we parse: CBOR simple values,
# floats, tags and indefinite lengths; sign and width edges.
INTERESTING = (
    0x00, 0x01, 0x7F, 0x80, 0xFF, 0x17, 0x18, 0x19, 0x1A, 0x1B, 0x1F,
    0x3F, 0x5F, 0x7F, 0x9F, 0xBF, 0xC0, 0xC2, 0xD8, 0xF4, 0xF5, 0xF6, 0xF7, 0xF9, 0xFB,
    0xFF, 0x0A, 0x0D, 0x20, 0x2F, 0x3A,
)


@st.composite
def _one_mutation(draw: st.DrawFn, data: bytes, seeds: Sequence[bytes]) -> bytes:
    n = len(data)
    op = draw(st.integers(0, 7))
    at = draw(st.integers(0, max(n - 1, 0)))
    if op == 0 and n:  # flip one bit
        out = bytearray(data)
        out[at] ^= 1 << draw(st.integers(0, 7))
        return bytes(out)
    if op == 1 and n:  # overwrite with an interesting byte
        out = bytearray(data)
        out[at] = draw(st.sampled_from(INTERESTING))
        return bytes(out)
    if op == 2:  # insert a few bytes
        return data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    if op == 3 and n:  # delete a range
        return data[:at] + data[at + draw(st.integers(1, min(16, n - at))):]
    if op == 4 and n:  # duplicate a range in place
        length = draw(st.integers(1, min(64, n - at)))
        return data[:at] + data[at:at + length] * 2 + data[at + length:]
    if op == 5:  # truncate
        return data[:at]
    if op == 6 and n:  # overwrite a little-endian or big-endian width edge
        width = draw(st.sampled_from((1, 2, 4, 8)))
        value = draw(st.sampled_from((0, 1, (1 << (8 * width)) - 1, 1 << (8 * width - 1))))
        big = draw(st.booleans())
        edge = value.to_bytes(width, "big" if big else "little")
        return data[:at] + edge + data[at + width:]
    other = draw(st.sampled_from(seeds))  # splice: our head, another seed's tail
    cut = draw(st.integers(0, len(other)))
    return data[:at] + other[cut:]


@st.composite
def _mutated(draw: st.DrawFn, seeds: Sequence[bytes], max_ops: int) -> bytes:
    data = draw(st.sampled_from(seeds))
    for _ in range(draw(st.integers(1, max_ops))):
        data = draw(_one_mutation(data, seeds))
    return data


def mutated(seeds: Sequence[bytes], max_ops: int = 4) -> st.SearchStrategy[bytes]:
    if not seeds:
        raise ValueError("mutated() needs at least one seed")
    return _mutated(list(seeds), max_ops)


# --- CBOR trees --------------------------------------------------------------

_EDGE_INTS = (0, 1, -1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**63,
              2**64 - 1, 2**64, -(2**63), -(2**63) - 1, -(2**64), -(2**64) - 1)

# Any value that canonical CBOR can carry, plus the ones it must refuse.
hostile_leaf: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from((True, False, None, 0.0, 1.0, -0.0, float("inf"), b"", "")),
    st.sampled_from(_EDGE_INTS),
    st.integers(),
    st.binary(max_size=40),
    st.text(max_size=20),
    st.builds(cbor2.CBORTag, st.sampled_from((0, 1, 2, 3, 24, 28, 29, 55799)),
              st.one_of(st.binary(max_size=9), st.integers(0, 3), st.text(max_size=4))),
    st.builds(cbor2.CBORSimpleValue, st.sampled_from((0, 16, 19, 32, 255))),
)

cbor_values: st.SearchStrategy[Any] = st.recursive(
    hostile_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers(-2, 2), st.booleans(),
                                  st.binary(max_size=4)), children, max_size=6),
    ),
    max_leaves=24,
)


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


def _rekey(value: Any, path: tuple[Any, ...], new_key: Any) -> Any:
    """Rename the map key at the end of `path` (the path must end in a map key)."""
    *parent_path, key = path
    parent: Any = value
    for p in parent_path:
        parent = parent[p]
    renamed = {(new_key if k == key else k): v for k, v in parent.items()}
    return _replace(value, tuple(parent_path), renamed)


def _encode(value: Any) -> bytes:
    try:
        return bytes(cbor2.dumps(value, canonical=True))
    except Exception:  # noqa: BLE001 - e.g. a float key; fall back to a plain encoding
        return bytes(cbor2.dumps(value))


@st.composite
def _cbor_mutated(draw: st.DrawFn, trees: Sequence[Any]) -> bytes:
    tree = draw(st.sampled_from(trees))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(tree)
        path = draw(st.sampled_from(paths))
        how = draw(st.integers(0, 9))
        parent: Any = tree
        for p in path[:-1]:
            parent = parent[p]
        if how == 0 and path and isinstance(parent, dict):
            tree = _rekey(tree, path, draw(st.one_of(
                st.integers(-1, 3), st.booleans(), st.binary(max_size=3),
                st.text(max_size=8))))
        elif how == 1:  # drop an element or field
            if path and isinstance(parent, list):
                tree = _replace(tree, path[:-1], [v for i, v in enumerate(parent)
                                                  if i != path[-1]])
            elif path and isinstance(parent, dict):
                tree = _replace(tree, path[:-1], {k: v for k, v in parent.items()
                                                  if k != path[-1]})
        elif how == 2:  # duplicate a list element
            if path and isinstance(parent, list):
                i = path[-1]
                tree = _replace(tree, path[:-1], [*parent[:i + 1], parent[i], *parent[i + 1:]])
        elif how == 3:  # a type-confused twin of the current value
            current = parent[path[-1]] if path else tree
            tree = _replace(tree, path, _confused(current, draw))
        else:
            tree = _replace(tree, path, draw(cbor_values))
    return _encode(tree)


def _confused(value: Any, draw: st.DrawFn) -> Any:
    """The value an over-lenient decoder would take for `value`."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        if value in (0, 1):
            return bool(value)
        return draw(st.sampled_from((float(value), value + 1, -value, True)))
    if isinstance(value, bytes):
        return draw(st.sampled_from((value.hex(), list(value), value + b"\0", value[:-1])))
    if isinstance(value, str):
        return draw(st.sampled_from((value.encode(), value + "\0", value.upper(), [value])))
    if isinstance(value, list):
        return draw(st.sampled_from((tuple(value), dict(enumerate(value)), value[:1], None)))
    if isinstance(value, dict):
        return draw(st.sampled_from((list(value.items()), list(value), None)))
    return draw(st.sampled_from((0, False, b"")))


def cbor_mutated(seeds: Sequence[bytes]) -> st.SearchStrategy[bytes]:
    """Schema-level mutations of CBOR documents (seeds are their encodings)."""
    trees = [cbor2.loads(s) for s in seeds]
    return _cbor_mutated(trees)


def cbor_documents() -> st.SearchStrategy[bytes]:
    """Arbitrary CBOR documents, canonically encoded when that is possible."""
    return cbor_values.map(_encode)
