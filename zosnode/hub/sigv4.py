"""AWS Signature Version 4 for S3 requests, as pure code.

We sign requests ourselves rather than pull in boto3: the hub ships in the
same single audited artifact as the node, boto3/botocore would add some
15 MB of unaudited code and a thread-based transport to a trio program, and
what we need of S3 (GET, HEAD, PUT, ListObjectsV2) takes one page of
well-specified signing code, checked against AWS's published example.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    region: str = "us-east-1"


def _uri_encode(text: str, *, slash: bool) -> str:
    return quote(text, safe="-_.~/" if not slash else "-_.~")


def canonical_request(method: str, path: str, query: Mapping[str, str],
                      headers: Mapping[str, str], payload_sha256: str) -> tuple[str, str]:
    """The canonical request text and the signed-headers list."""
    names = sorted(h.lower() for h in headers)
    values = {k.lower(): " ".join(v.strip().split()) for k, v in headers.items()}
    canonical_query = "&".join(
        f"{_uri_encode(k, slash=True)}={_uri_encode(v, slash=True)}"
        for k, v in sorted(query.items())
    )
    signed = ";".join(names)
    text = "\n".join([
        method,
        _uri_encode(path, slash=False),
        canonical_query,
        "".join(f"{n}:{values[n]}\n" for n in names),
        signed,
        payload_sha256,
    ])
    return text, signed


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def authorization(creds: Credentials, method: str, path: str, query: Mapping[str, str],
                  headers: Mapping[str, str], payload_sha256: str, amz_date: str) -> str:
    """The Authorization header value. `headers` must include host and x-amz-date."""
    date = amz_date[:8]
    scope = f"{date}/{creds.region}/s3/aws4_request"
    creq, signed = canonical_request(method, path, query, headers, payload_sha256)
    to_sign = "\n".join([ALGORITHM, amz_date, scope,
                         hashlib.sha256(creq.encode()).hexdigest()])
    key = _hmac(f"AWS4{creds.secret_key}".encode(), date)
    for part in (creds.region, "s3", "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return (f"{ALGORITHM} Credential={creds.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}")
