"""Root metadata (kind "root"; its fields `Root`'s and "spec"): which k-of-n keys sign
manifests and the next root, until when. A rotation to new keys that raises `manifest_floor`
(the lowest manifest version accepted) makes nodes forget the versions they remember."""

from dataclasses import dataclass

from zosnode.layout import is_hex_id
from zosnode.trust.errors import MalformedError, TrustUsageError, need
from zosnode.trust.schema import MAX_INT, versioned

SPEC = 1
MAX_KEYS = 32
MAX_ROOT_BYTES = 64 * 1024
_FIELDS = ("spec", "version", "expires_at", "threshold", "keys", "manifest_floor")


@dataclass(frozen=True)
class Root:
    version: int
    expires_at: int
    threshold: int
    keys: tuple[str, ...]
    manifest_floor: int = 0

    def __post_init__(self) -> None:
        need(1 <= self.version <= MAX_INT, f"root version {self.version} must be at least 1")
        need(0 <= self.expires_at <= MAX_INT,
             f"root expires_at {self.expires_at} is not a unix time")
        need(0 <= self.manifest_floor <= MAX_INT,
             f"root manifest_floor {self.manifest_floor} is negative")
        need(bool(self.keys) and len(self.keys) <= MAX_KEYS,
             f"a root lists 1 to {MAX_KEYS} keys, not {len(self.keys)}")
        for kid in self.keys:
            need(is_hex_id(kid), f"key id {kid!r} is not 64 lowercase hex digits")
        need(list(self.keys) == sorted(set(self.keys)), "root keys must be sorted and distinct")
        need(1 <= self.threshold <= len(self.keys),
             f"threshold {self.threshold} must be between 1 and the {len(self.keys)} keys")


def decode_body(body: bytes) -> Root:
    f = versioned(body, "root", _FIELDS, spec=SPEC, max_size=MAX_ROOT_BYTES, max_depth=4)
    try:
        # Ranges (version and threshold from 1) are the dataclass's checks.
        return Root(f.integer("version"), f.integer("expires_at"), f.integer("threshold"),
                    f.str_list("keys"), f.integer("manifest_floor"))
    except TrustUsageError as exc:
        raise MalformedError(f"root: {exc}") from None
