"""The trust anchor compiled into the artifact: {"spec": 1, "root": a signed root envelope,
"floor": the minimum manifest version, "build_time"}. Its root must carry a threshold of its
own signatures (else a build mistake). The build time is the earliest `now` a node uses: one
whose clock is unset (1970) or behind still refuses what expired before the build."""

import pkgutil
from dataclasses import dataclass

from zosnode.trust import envelope
from zosnode.trust.root import MAX_ROOT_BYTES, Root, decode_body
from zosnode.trust.schema import versioned

SPEC = 1
MAX_ANCHOR_BYTES = MAX_ROOT_BYTES + 1024


@dataclass(frozen=True)
class Anchor:
    root_bytes: bytes
    root: Root
    floor: int
    build_time: int


def verify_self_signed(root_bytes: bytes) -> Root:
    env = envelope.decode(root_bytes, max_size=MAX_ROOT_BYTES, kind="root")
    root = decode_body(env.body)
    envelope.require_threshold(env, root.keys, root.threshold, f"root v{root.version}'s own keys")
    return root


def decode(data: bytes) -> Anchor:
    f = versioned(data, "anchor", ("spec", "root", "floor", "build_time"), spec=SPEC,
                  max_size=MAX_ANCHOR_BYTES, max_depth=4)
    root_bytes = f.get("root", bytes)
    floor, build_time = f.integer("floor"), f.integer("build_time")
    return Anchor(root_bytes, verify_self_signed(root_bytes), floor, build_time)


def load_embedded() -> Anchor | None:
    try:
        data = pkgutil.get_data("zosnode.trust", "anchor.cbor")
    except OSError:
        return None
    return None if data is None else decode(data)
