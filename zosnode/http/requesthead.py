"""What a request head must be before it is served: the checks h11 leaves to us.

Pure functions over the bytes and strings a client sent (no sockets, no
urllib, no clock). The server runs them on every request, so the common case
is a few C-level scans and no regular expression.

h11 0.16 already refuses, with 400: malformed request lines (NUL, 8-bit or
control bytes in the method or target, extra spaces), NUL, CR or LF inside a
header line, a space before the colon, several Host headers, a Content-Length
that is not 1-20 digits or differs between copies, chunk sizes that are not
1-20 hex digits; and, with 501, any Transfer-Encoding but `chunked` and
repeated Transfer-Encoding headers. What it lets through, and
`check_head` / `parse_target` refuse:

- control bytes other than HTAB in header values (h11 passes 0x01-0x1f, 0x7f);
- obsolete line folding (h11 unfolds it: RFC 9112 §5.2 lets a server refuse);
- Transfer-Encoding together with Content-Length (h11 obeys the TE; RFC 9112
  §6.3 calls it a smuggling sign and requires the connection be closed);
- Content-Length repeated or given as a list, even with equal values (h11
  collapses `5, 5` and two `5`s into one);
- Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1: faulty framing);
- an HTTP major version other than 1 (505);
- any request target but origin-form `/path?query`, absolute-form
  `http://host[:port]/path?query` (what a client talking to a proxy sends)
  and `*` for OPTIONS; percent-escapes that are not `%HH`, that decode to
  control characters or to bytes that are not UTF-8.
"""

import ipaddress
import string
from collections.abc import Mapping
from types import MappingProxyType

from zosnode.errors import ZosError


class HttpRefused(ZosError):
    """The PEER sent a request we refuse: `status` is owed, `label` names it in metrics."""

    def __init__(self, status: int, why: str, label: str) -> None:
        super().__init__(why)
        self.status = status
        self.label = label


_UNRESERVED = string.ascii_letters + string.digits + "-._~"
_PCHAR = _UNRESERVED + "!$&'()*+,;=" + ":@"
# A target made only of these needs no decoding and has no query: the fast path.
_PLAIN = _PCHAR + "/"
_PATH_CHARS = frozenset(_PLAIN + "%")
_QUERY_CHARS = frozenset(_PLAIN + "?%")
_HEX = frozenset(string.hexdigits)
_HOST_CHARS = frozenset(string.ascii_letters + string.digits + "-.")
_V6_CHARS = frozenset(string.hexdigits + ":.")
_NO_QUERY: Mapping[str, str] = MappingProxyType({})
# Bytes no header may hold: C0 controls but HTAB (CR and LF only end lines), DEL.
_CTL = bytes(range(0x00, 0x09)) + b"\x0b\x0c" + bytes(range(0x0e, 0x20)) + b"\x7f"

Target = tuple[str, Mapping[str, str], str | None]


def head_end(buf: bytes) -> int:
    """Where the head at the start of `buf` ends (just past its blank line), or -1.

    The blank line is found the way h11 finds it: LF, optional CR, LF.
    """
    crlf = buf.find(b"\n\r\n")
    lf = buf.find(b"\n\n", 0, len(buf) if crlf < 0 else crlf + 2)
    if lf >= 0:
        return lf + 2
    return crlf + 3 if crlf >= 0 else -1


def check_head(head: bytes) -> None:
    """Refuse a complete request head (request line to blank line) h11 would accept.

    Raises HttpRefused; returns None when the head may be served.
    """
    if len(head.translate(None, _CTL)) != len(head):
        raise HttpRefused(400, "control byte in the request head", "bad-head")
    if b"\n " in head or b"\n\t" in head:
        raise HttpRefused(400, "obsolete line folding in the request head", "bad-head")
    first = head[: head.find(b"\n")].rstrip(b"\r")
    version = first[first.rfind(b" ") + 1 :]
    if not version.startswith(b"HTTP/1."):
        raise HttpRefused(505, "only HTTP/1.x is served", "unsupported")
    low = head.lower()
    if b"content-length" not in low and b"transfer-encoding" not in low:
        return
    lengths: list[bytes] = []
    codings: list[bytes] = []
    for line in low.split(b"\n")[1:]:
        name, _, value = line.partition(b":")
        if name == b"content-length":
            lengths.append(value.strip(b" \t\r"))
        elif name == b"transfer-encoding":
            codings += (c.strip(b" \t\r") for c in value.split(b","))
    if lengths and codings:
        raise HttpRefused(400, "both Transfer-Encoding and Content-Length", "bad-framing")
    if len(lengths) > 1 or (lengths and not (lengths[0].isdigit() and lengths[0].isascii())):
        raise HttpRefused(400, "more than one Content-Length value", "bad-framing")
    if not codings:
        return
    if codings[-1] != b"chunked" or codings.count(b"chunked") != 1:
        # RFC 9112 §6.3: when chunked is not the final coding, applied once,
        # the body length cannot be known: 400 and close.
        raise HttpRefused(400, "Transfer-Encoding must end in chunked, applied once",
                          "bad-framing")
    if len(codings) > 1:
        raise HttpRefused(501, "no transfer coding but chunked is supported", "unsupported")
    if version == b"HTTP/1.0":
        raise HttpRefused(400, "Transfer-Encoding in an HTTP/1.0 request", "bad-framing")


def parse_target(method: str, target: str) -> Target:
    """The decoded path, the query and the authority (absolute-form only) of a target.

    Raises HttpRefused (400) for anything but the three forms a server owes
    an answer to (RFC 9112 §3.2); authority-form (CONNECT) is not served.
    """
    if target[:1] == "/":
        if not target.strip(_PLAIN):
            return target, _NO_QUERY, None
        path, query = _origin(target)
        return path, query, None
    if target == "*":
        if method != "OPTIONS":
            raise HttpRefused(400, "request target * is only for OPTIONS", "bad-target")
        return "*", _NO_QUERY, None
    if target[:7].lower() == "http://":
        rest = target[7:]
        cut = len(rest)
        for sep in "/?":
            at = rest.find(sep)
            if 0 <= at < cut:
                cut = at
        authority = rest[:cut]
        _check_authority(authority)
        path, query = _origin("/" + rest[cut:].removeprefix("/"))
        return path, query, authority
    raise HttpRefused(400, "request target is not /path, http://host/path or *", "bad-target")


def _origin(target: str) -> tuple[str, Mapping[str, str]]:
    path, _, query = target.partition("?")
    if not _PATH_CHARS.issuperset(path) or not _QUERY_CHARS.issuperset(query):
        raise HttpRefused(400, "request target has a character that must be escaped",
                          "bad-target")
    pairs = {}
    for pair in query.split("&") if query else ():
        name, _, value = pair.partition("=")
        if name:
            pairs[_unquote(name.replace("+", " "))] = _unquote(value.replace("+", " "))
    return _unquote(path), MappingProxyType(pairs) if pairs else _NO_QUERY


def _unquote(text: str) -> str:
    if "%" not in text:
        return text
    first, *rest = text.split("%")
    out = bytearray(first.encode("ascii"))
    for piece in rest:
        if len(piece) < 2 or not _HEX.issuperset(piece[:2]):
            raise HttpRefused(400, "bad percent-escape in the request target", "bad-target")
        out.append(int(piece[:2], 16))
        out += piece[2:].encode("ascii")
    try:
        decoded = out.decode("utf-8")
    except UnicodeDecodeError:
        raise HttpRefused(400, "request target does not decode to UTF-8",
                          "bad-target") from None
    if any(c < " " or "\x7f" <= c <= "\x9f" for c in decoded):
        raise HttpRefused(400, "request target decodes to a control character", "bad-target")
    return decoded


def _check_authority(authority: str) -> None:
    def refuse(why: str) -> HttpRefused:
        return HttpRefused(400, f"absolute-form target: {why}", "bad-target")

    port: str | None = None
    if authority.startswith("["):
        close = authority.find("]")
        host, after = authority[1:close], authority[close + 1 :]
        if close < 0 or not host or not _V6_CHARS.issuperset(host):
            raise refuse("bad IPv6 literal")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise refuse("bad IPv6 literal") from None
        if after:
            if not after.startswith(":"):
                raise refuse("junk after the IPv6 literal")
            port = after[1:]
    else:
        host, colon, after = authority.partition(":")
        if colon:
            port = after
        # Userinfo ("user@host") is refused: RFC 9110 §4.2.4 deprecates it.
        if (not host or len(host) > 253 or not _HOST_CHARS.issuperset(host)
                or "" in host.split(".")):
            raise refuse("bad host name")
    if port is not None and not (
            port.isascii() and port.isdigit() and len(port) <= 5 and 0 < int(port) <= 65535):
        raise refuse("bad port")
