"""The hub's HTTP routes: static objects, listings, publish, heartbeats, metrics.

Static paths are the shared data layout itself (see `zosnode.layout`), so
a node cannot tell the hub from nginx serving the same directory; everything
dynamic lives under /api/v1/ and /metrics; the web pages for people
(`zosnode.hub.web`) answer /, /media/, /fleet, /releases and /static/.
See docs/hub-api.md.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Collection
from dataclasses import replace
from typing import Any

from zosnode import layout
from zosnode.bootmedia.errors import BuildInputError
from zosnode.bootmedia.ipxe import SETTINGS_NAME, BootConfig, render_ipxe, render_settings
from zosnode.flist.blocks import MAX_BLOCK_SIZE
from zosnode.flist.format import MAX_METADATA as MAX_FLIST_BYTES
from zosnode.http.messages import Request, Response, text_response
from zosnode.hub import paths
from zosnode.hub.metrics import HubMetrics
from zosnode.hub.objects import (
    ObjectKind,
    ObjectPath,
    parse_url_path,
    release_version,
    root_version,
)
from zosnode.hub.publish import Publisher, PublishRefused
from zosnode.hub.registry import PublishLockBusy, Registry, RegistryError
from zosnode.hub.replay import ReplayCache
from zosnode.hub.storage import Storage, StorageError
from zosnode.hub.web.site import WebSite
from zosnode.trust.manifest import MAX_MANIFEST_BYTES
from zosnode.trust.root import MAX_ROOT_BYTES
from zosnode.wire import heartbeat_verify
from zosnode.wire.errors import WireRefused
from zosnode.wire.publish_auth import MAX_SKEW_S, verify_request

IMMUTABLE_CACHE = "public, max-age=31536000, immutable"
MUTABLE_CACHE = "no-cache"
MAX_MISSING_QUERY = 10_000
MISSING_QUERY_BYTES = MAX_MISSING_QUERY * 72 + 64
# Per kind of published object: the format's own cap (blocks may carry the
# encryption overhead on top of the 8 MiB block size).
BODY_CAPS = {
    ObjectKind.BLOCK: MAX_BLOCK_SIZE + 4096,
    ObjectKind.FLIST: MAX_FLIST_BYTES,
    ObjectKind.ROOT: MAX_ROOT_BYTES,
    ObjectKind.MANIFEST: MAX_MANIFEST_BYTES,
    ObjectKind.RELEASE: MAX_MANIFEST_BYTES,  # read, then refused: not publishable
    ObjectKind.TAG: 65,
}


def json_response(status: int, value: Any, *, route: str) -> Response:
    body = (json.dumps(value, sort_keys=True, indent=1) + "\n").encode()
    return Response(status, (("content-type", "application/json"),
                             ("cache-control", "no-store")), body, route=route)


class HubApp:
    def __init__(
        self,
        storage: Storage,
        *,
        publishers: Collection[str] = (),
        registry: Registry,
        clock: Callable[[], float] = time.time,
        max_skew_s: int = MAX_SKEW_S,
    ) -> None:
        self.storage = storage
        self.publishers = frozenset(publishers)
        self.clock = clock
        self.max_skew_s = max_skew_s
        self.registry = registry
        self.publisher = Publisher(storage, lock=registry.publish_lock)
        self.replays = ReplayCache(max_skew_s)
        self.metrics = HubMetrics()
        self.open_connections: Callable[[], int] = lambda: 0
        # The web pages and their JSON twins (boot media, fleet, releases).
        self.web = WebSite(storage, registry, now=self.now)

    def body_limit(self, head: Request) -> int:
        """The largest body each route takes, so no route buffers more than it needs."""
        if head.method == "PUT":
            static = parse_url_path(head.path)
            return BODY_CAPS.get(static.kind, 0) if static is not None else 0
        if head.method == "POST":
            return {"/api/v1/heartbeat": heartbeat_verify.MAX_BYTES,
                    "/api/v1/missing": MISSING_QUERY_BYTES}.get(head.path, 0)
        return 0

    async def start(self) -> None:
        await self.publisher.load_roots()

    def now(self) -> int:
        return int(self.clock())

    def observe(self, request: Request | None, response: Response, sent: int) -> None:
        method = request.method if request is not None and request.method in (
            "GET", "HEAD", "PUT", "POST") else "other"
        self.metrics.observe(response.route, method, response.status, sent)

    async def handle(self, request: Request) -> Response:
        try:
            return await self._route(request)
        except StorageError as exc:
            return text_response(503, f"storage unavailable: {exc}", route="error")
        except RegistryError as exc:
            # The database is down or busy: the node retries its heartbeat.
            return text_response(503, f"registry unavailable: {exc}", route="error",
                                 headers=(("retry-after", "5"),))

    async def _route(self, r: Request) -> Response:
        if r.target == "*":  # OPTIONS * (the server refuses * with any other method)
            return Response(204, (("allow", "GET, HEAD, PUT, POST"),), route="options")
        static = parse_url_path(r.path)
        if static is not None:
            route = "/" + static.kind.value
            if r.method in ("GET", "HEAD"):
                return await self._static(static, route)
            if r.method == "PUT":
                return await self._publish(r, static.path, route)
            return _not_allowed("GET, HEAD, PUT", route)
        parts = r.path.strip("/").split("/")
        if parts == ["metrics"]:
            if r.method not in ("GET", "HEAD"):
                return _not_allowed("GET, HEAD", "/metrics")
            try:
                summary = await self.registry.summary(self.now())
            except RegistryError:
                summary = None  # the rest of the metrics still say what the hub does
            text = self.metrics.render(self.open_connections(), summary)
            return Response(200, (("content-type", "text/plain; version=0.0.4"),
                                  ("cache-control", "no-store")), text.encode(),
                            route="/metrics")
        page = await self.web.handle(r)
        if page is not None:
            return page
        if parts[:2] != ["api", "v1"]:
            return text_response(404, "not found", route="not-found")
        api = parts[2:]
        post = {"heartbeat": self._heartbeat, "missing": self._missing}
        if len(api) == 1 and api[0] in post:
            if r.method != "POST":
                return _not_allowed("POST", f"/api/v1/{api[0]}")
            return await post[api[0]](r)
        if r.method not in ("GET", "HEAD"):
            return _not_allowed("GET, HEAD", "/api/v1")
        match api:
            case ["nodes"]:
                return json_response(200, await self.registry.to_json_async(self.now()),
                                     route="/api/v1/nodes")
            case ["nodes", node_id, "history"]:
                if not layout.is_hex_id(node_id):
                    return text_response(404, "not found", route="not-found")
                events = await self.registry.history(node_id)
                return json_response(200, {"node_id": node_id, "events": [
                    {"at": e.at, "kind": e.kind, "detail": e.detail} for e in events]},
                    route="/api/v1/nodes/history")
            case ["channels"]:
                return json_response(200, {"channels": await self.storage.list("channels")},
                                     route="/api/v1/channels")
            case ["channels", channel, "releases"]:
                try:
                    folder = paths.releases_folder(channel)
                except layout.LayoutError:
                    return text_response(404, "no such channel", route="not-found")
                names = await self.storage.list(folder)
                versions = sorted(v for n in names if (v := release_version(n)))
                return json_response(200, {"channel": channel, "releases": versions},
                                     route="/api/v1/channels/releases")
            case ["flists"]:
                names = [n for n in await self.storage.list(layout.FLISTS)
                         if layout.is_hex_id(n)]
                return json_response(200, {"flists": names}, route="/api/v1/flists")
            case ["tags"]:
                names = await self.storage.list(paths.TAGS)
                tags = {}
                for name in names:
                    obj = (await self.storage.get(paths.tag_path(name))
                           if paths.is_tag(name) else None)
                    if obj is not None and isinstance(obj.body, bytes):
                        tags[name] = obj.body.decode("ascii", "replace").strip()
                return json_response(200, {"tags": tags}, route="/api/v1/tags")
            case ["bootstrap", farm, channel, "boot.ipxe"]:
                return await self._ipxe(r, farm, channel)
            case ["bootstrap", farm, channel, name] if name == SETTINGS_NAME:
                return await self._ipxe(r, farm, channel, settings=True)
            case ["roots"]:
                names = await self.storage.list(layout.ROOTS)
                versions = sorted(v for n in names if (v := root_version(n)))
                return json_response(200, {"roots": versions}, route="/api/v1/roots")
        return text_response(404, "not found", route="not-found")

    async def _ipxe(self, r: Request, farm: str, channel: str,
                    settings: bool = False) -> Response:
        """The farm's iPXE script, pointing at this hub (as the client reached it); it
        chains the signed UKI on EFI when the channel has one. With `settings` the
        settings file that script hands to the UKI (unsigned: farm, channel, hub)."""
        route = "/api/v1/bootstrap"
        # An absolute-form target's authority overrides Host (RFC 9112 §3.2.2).
        host = r.authority or r.header("host") or ""
        try:
            cfg = BootConfig(farm=farm, channel=channel, hubs=(f"http://{host}",))
            uki = await self.storage.exists(paths.boot_path(channel, paths.UKI))
        except (BuildInputError, layout.LayoutError) as exc:
            return text_response(400, str(exc), route=route)
        text = render_settings(cfg) if settings else render_ipxe(replace(cfg, uki=uki))
        return Response(200, (("content-type", "text/plain; charset=utf-8"),
                              ("cache-control", "no-store")), text.encode(), route=route)

    async def _static(self, static: ObjectPath, route: str) -> Response:
        obj = await self.storage.get(static.path)
        if obj is None:
            return text_response(404, "not found", route=route)
        cid = static.object_id
        if cid is not None:
            etag = f'"{cid}"'
        elif isinstance(obj.body, bytes):
            etag = f'"{hashlib.blake2b(obj.body, digest_size=16).hexdigest()}"'
        else:
            etag = None
        headers = [("content-type", "application/octet-stream"),
                   ("cache-control", IMMUTABLE_CACHE if static.kind.immutable
                    else MUTABLE_CACHE),
                   ("accept-ranges", "bytes")]
        if etag is not None:
            headers.append(("etag", etag))
        return Response(200, tuple(headers), obj.body, route=route, ranges=True)

    async def _publish(self, r: Request, key: str, route: str) -> Response:
        now = self.now()
        try:
            signed = verify_request(r.method, r.target, r.body, r.header,
                                    allowed=self.publishers, now=now,
                                    max_skew_s=self.max_skew_s)
        except WireRefused as exc:
            self.metrics.refused["unauthenticated"] += 1
            return text_response(401, str(exc), route=f"PUT {route}")
        if not self.replays.accept(signed.publisher, signed.nonce, signed.timestamp, now):
            self.metrics.refused["replay"] += 1
            return text_response(401, "replayed request (nonce already used)",
                                 route=f"PUT {route}")
        try:
            written = await self.publisher.put(key, r.body, now)
        except PublishLockBusy as exc:
            return text_response(503, f"busy: {exc}", route=f"PUT {route}",
                                 headers=(("retry-after", "1"),))
        except PublishRefused as exc:
            self.metrics.refused[exc.reason] += 1
            status = 409 if exc.reason in ("not-newer", "root-gap") else 422
            return text_response(status, f"{exc.reason}: {exc}", route=f"PUT {route}")
        self.metrics.published[route] += 1
        return json_response(201, {"stored": written}, route=f"PUT {route}")

    async def _heartbeat(self, r: Request) -> Response:
        route = "/api/v1/heartbeat"
        try:
            hb = heartbeat_verify.decode_verified(r.body)
        except WireRefused as exc:
            self.metrics.refused["bad-heartbeat"] += 1
            return text_response(400, str(exc), route=route)
        why = await self.registry.record(hb, self.now())
        if why is not None:
            self.metrics.refused["stale-heartbeat"] += 1
            return text_response(409, why, route=route)
        return Response(204, route=route)

    async def _missing(self, r: Request) -> Response:
        """Which of the given block and flist ids this hub lacks (for `hub push`)."""
        route = "/api/v1/missing"
        try:
            query = json.loads(r.body)
            wanted = {kind: list(query.get(kind, [])) for kind in ("blocks", "flists")}
            if not isinstance(query, dict) or set(query) - set(wanted):
                raise ValueError("expected {\"blocks\": [...], \"flists\": [...]}")
            if sum(len(v) for v in wanted.values()) > MAX_MISSING_QUERY:
                raise ValueError(f"at most {MAX_MISSING_QUERY} ids per query")
            for i in (i for v in wanted.values() for i in v):
                if not layout.is_hex_id(i):
                    raise ValueError(f"not a 64-hex-digit id: {str(i)[:80]!r}")
        except RecursionError:
            # json nests by recursion: a deeply nested body is the client's
            # fault, not the hub's (this route's body cap bounds the work).
            return text_response(400, "bad query: nested too deeply", route=route)
        except (ValueError, AttributeError, TypeError) as exc:
            return text_response(400, f"bad query: {exc}", route=route)
        out = {
            "blocks": [b for b in wanted["blocks"]
                       if not await self.storage.exists(layout.block_path(b))],
            "flists": [f for f in wanted["flists"]
                       if not await self.storage.exists(layout.flist_path(f))],
        }
        return json_response(200, out, route=route)


def _not_allowed(allow: str, route: str) -> Response:
    return text_response(405, "method not allowed", route=route, headers=(("allow", allow),))
