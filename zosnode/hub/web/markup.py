"""A template layer that escapes by default.

`Markup` is text our own code vouches for as HTML. Everything else that
reaches a page (a node's hostname, a farm name, an error text) goes through
`escape`, which `render` and `join` apply to every value that is not already
`Markup`. Templates are constants in our code, never data; values are
always placed in element text or in double-quoted attributes, where
`html.escape(quote=True)` is enough. Pure.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from urllib.parse import quote, urlencode


class Markup(str):
    """HTML our code produced (or escaped): inserted as is."""

    __slots__ = ()


def escape(value: object) -> Markup:
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


def render(template: str, /, **values: object) -> Markup:
    """`template` (our constant) with each `{name}` replaced by its escaped value."""
    return Markup(template.format_map({k: escape(v) for k, v in values.items()}))


def join(parts: Iterable[object], sep: str = "") -> Markup:
    return Markup(sep.join(escape(p) for p in parts))


def url(path: str, query: Iterable[tuple[str, object]] = ()) -> str:
    """A same-site URL: `path` (ours, starting with /) and a percent-encoded query.

    The result is plain text: `render` escapes it again for its attribute.
    """
    if not path.startswith("/") or path.startswith("//"):
        raise ValueError(f"not a site path: {path!r}")
    pairs = [(k, str(v)) for k, v in query if v is not None and str(v) != ""]
    return quote(path, safe="/") + ("?" + urlencode(pairs) if pairs else "")
