"""The web pages' routes: gather data (storage, registry), render, respond.

`WebSite.handle` answers the paths it owns and returns None for the rest, so
the hub's router (`zosnode.hub.app`) stays the one place that orders routes:

    /  /media/preview  /media/download  /fleet  /fleet/<node>  /releases
    /static/hub.css
    /api/v1/media  /api/v1/media/download  /api/v1/fleet  /api/v1/nodes/<node>
    /api/v1/releases

Every HTML response carries a Content-Security-Policy that allows no script
at all and styles from this hub only; values are escaped by the templates
(`markup`), and a 400 page says what was wrong with the request.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from zosnode import layout
from zosnode.http.messages import FileBody, Request, Response
from zosnode.hub import paths
from zosnode.hub.publish import stored_manifest
from zosnode.hub.registry import Registry, fleet_row
from zosnode.hub.storage import LocalStorage, Storage
from zosnode.hub.web import fleet, pages
from zosnode.hub.web.errors import PageInputError
from zosnode.hub.web.markup import Markup, url
from zosnode.hub.web.media_cache import MediaBuildError, MediaBusy, MediaCache
from zosnode.hub.web.media_spec import ALLOWED_TEXT, KINDS, parse_query
from zosnode.hub.web.style import CSS
from zosnode.trust.errors import Refused
from zosnode.trust.manifest import Manifest

CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'")
HTML_HEADERS = (
    ("content-type", "text/html; charset=utf-8"),
    ("cache-control", "no-store"),
    ("content-security-policy", CSP),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
)
CSS_BYTES = CSS.encode()
CSS_ETAG = '"' + hashlib.blake2b(CSS_BYTES, digest_size=16).hexdigest() + '"'
HISTORY_SHOWN = 20


def html_response(status: int, body: Markup, route: str,
                  headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status, HTML_HEADERS + headers, body.encode(), route=route)


def _json(status: int, value: Any, route: str) -> Response:
    body = (json.dumps(value, sort_keys=True, indent=1) + "\n").encode()
    return Response(status, (("content-type", "application/json"),
                             ("cache-control", "no-store"),
                             ("x-content-type-options", "nosniff")), body, route=route)


class WebSite:
    def __init__(self, storage: Storage, registry: Registry, *,
                 now: Callable[[], int], media_dir: Path | None = None,
                 media_cache: MediaCache | None = None) -> None:
        self.storage = storage
        self.registry = registry
        self.now = now
        # A hub on S3 keeps its media cache in a directory of its own for its
        # lifetime (removed by `close`); on a data directory, beside the data.
        self._own_media_dir: Path | None = None
        if media_cache is None:
            if media_dir is None:
                if isinstance(storage, LocalStorage):
                    media_dir = Path(storage.root) / ".hub" / "media"
                else:
                    media_dir = self._own_media_dir = Path(
                        tempfile.mkdtemp(prefix="zosnode-media-"))
            media_cache = MediaCache(media_dir)
        self.media = media_cache
        self._boot_hashes: dict[tuple[str, int, int, int], str] = {}

    def close(self) -> None:
        """Remove the media cache directory this site made for itself, if any."""
        if self._own_media_dir is not None:
            shutil.rmtree(self._own_media_dir, ignore_errors=True)

    async def handle(self, r: Request) -> Response | None:
        parts = [p for p in r.path.split("/") if p] if r.path != "/" else []
        api = parts[:2] == ["api", "v1"]
        rest = parts[2:] if api else parts
        if api:
            # /api/v1/nodes and .../history stay the registry API's.
            if not rest or rest[0] not in ("media", "fleet", "nodes", "releases") or (
                    rest[0] == "nodes" and len(rest) != 2):
                return None
        elif rest and rest[0] not in ("media", "fleet", "releases", "static"):
            return None
        if r.method not in ("GET", "HEAD"):
            return Response(405, (("allow", "GET, HEAD"),), b"method not allowed\n",
                            route="/web")
        try:
            return await self._route(r, rest, api)
        except PageInputError as exc:
            return self._error(400, "Bad request", str(exc), api)

    def _error(self, status: int, title: str, why: str, api: bool,
               headers: tuple[tuple[str, str], ...] = ()) -> Response:
        if api:
            return _json(status, {"error": why}, route="/web/error")
        return html_response(status, pages.error_page(status, title, why), "/web/error",
                             headers)

    async def _route(self, r: Request, rest: list[str], api: bool) -> Response:
        match rest:
            case [] if not api:
                return html_response(200, pages.media_form(await self._channels(),
                                                           r.query), "/")
            case ["static", "hub.css"] if not api:
                return Response(200, (("content-type", "text/css; charset=utf-8"),
                                      ("cache-control", "no-cache"), ("etag", CSS_ETAG)),
                                CSS_BYTES, route="/static")
            case ["media"] if api:
                if not r.query.get("farm"):
                    return _json(200, {"kinds": {k.name: {"title": k.title,
                                                          "filename": k.filename,
                                                          "instructions": k.instructions}
                                                 for k in KINDS.values()},
                                       "channels": await self._channels(),
                                       "allowed_args": ALLOWED_TEXT},
                                 route="/api/v1/media")
                return await self._preview(r, api=True)
            case ["media", "preview"] if not api:
                return await self._preview(r, api=False)
            case ["media", "download"]:
                return await self._download(r, api)
            case ["fleet"]:
                return await self._fleet(r, api)
            case ["fleet", node_id] if not api:
                return await self._node(node_id, api=False)
            case ["nodes", node_id] if api:
                return await self._node(node_id, api=True)
            case ["releases"]:
                return await self._releases(r, api)
        return self._error(404, "Not found", "no such page", api)

    # -- boot media --------------------------------------------------------------------

    def _hub_url(self, r: Request) -> str:
        host = r.authority or r.header("host") or ""
        return f"http://{host}"

    async def _channels(self) -> list[str]:
        names = set(await self.storage.list(layout.CHANNELS))
        names |= set(await self.storage.list(paths.BOOT))
        return sorted(n for n in names if _is_channel(n))

    async def _known_channel(self, channel: str) -> bool:
        return (await self.storage.exists(layout.manifest_path(channel))
                or await self.storage.exists(paths.boot_path(channel, paths.KERNEL)))

    async def _preview(self, r: Request, api: bool) -> Response:
        req = parse_query(r.query)
        hub = self._hub_url(r)
        line = req.cmdline(hub)
        if not await self._known_channel(req.channel):
            return self._error(404, "Not found", f"no channel {req.channel!r} on this hub", api)
        if api:
            kind = KINDS[req.kind]
            return _json(200, {"farm": req.farm, "channel": req.channel, "kind": req.kind,
                               "args": list(req.extra), "cmdline": line,
                               "filename": kind.filename, "instructions": kind.instructions,
                               "download": url("/api/v1/media/download", req.query())},
                         route="/api/v1/media")
        return html_response(200, pages.media_preview(req, line), "/media/preview")

    async def _download(self, r: Request, api: bool) -> Response:
        req = parse_query(r.query)
        hub = self._hub_url(r)
        cfg = req.config(hub)
        if not await self._known_channel(req.channel):
            # Never a build for a channel this hub does not serve.
            return self._error(404, "Not found", f"no channel {req.channel!r} on this hub", api)
        key = req.key(hub, await self._boot_file_hashes(req.channel))
        try:
            data = await self.media.get(key, req.kind, cfg)
        except MediaBusy as exc:
            return self._error(503, "Busy", str(exc), api, (("retry-after", "10"),))
        except MediaBuildError as exc:
            return self._error(500, "Build failed", str(exc), api)
        kind = KINDS[req.kind]
        return Response(200, (("content-type", kind.content_type),
                              ("content-disposition", f'attachment; filename="{kind.filename}"'),
                              ("cache-control", "no-store"), ("etag", f'"{key}"'),
                              ("x-content-type-options", "nosniff")),
                        data, route="/media/download", ranges=True)

    async def _boot_file_hashes(self, channel: str) -> tuple[str, str]:
        out = []
        for name in paths.BOOT_FILES:
            obj = await self.storage.get(paths.boot_path(channel, name))
            if obj is None:
                out.append("absent")
            elif isinstance(obj.body, bytes):
                out.append(hashlib.blake2b(obj.body, digest_size=16).hexdigest())
            else:
                out.append(await self._file_hash(obj.body))
        return out[0], out[1]

    async def _file_hash(self, body: FileBody) -> str:
        """BLAKE2b of a boot file, remembered by inode, size and mtime (it is large)."""
        try:
            st = os.stat(body.path)
        except OSError:
            return "absent"
        sig = (body.path, st.st_ino, st.st_size, st.st_mtime_ns)
        known = self._boot_hashes.get(sig)
        if known is not None:
            return known

        def digest() -> str:
            h = hashlib.blake2b(digest_size=16)
            with open(body.path, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            return h.hexdigest()

        value = await trio.to_thread.run_sync(digest)
        if len(self._boot_hashes) > 256:
            self._boot_hashes.clear()
        self._boot_hashes[sig] = value
        return value

    # -- fleet --------------------------------------------------------------------------

    async def _current_manifests(self) -> dict[str, Manifest]:
        out = {}
        for name in await self.storage.list(layout.CHANNELS):
            if not _is_channel(name):
                continue
            m = await self._manifest(layout.manifest_path(name))
            if m is not None:
                out[name] = m
        return out

    async def _manifest(self, key: str) -> Manifest | None:
        obj = await self.storage.get(key)
        if obj is None:
            return None
        data = obj.body if isinstance(obj.body, bytes) else await trio.to_thread.run_sync(
            Path(obj.body.path).read_bytes)
        try:
            return stored_manifest(data)
        except Refused:
            return None

    async def _fleet(self, r: Request, api: bool) -> Response:
        # Read on every request, no snapshot: the rows are columns (~20 ms for
        # 10,000 nodes), and only the page's nodes are decoded whole.
        q = fleet.parse_query(r.query)
        current = await self._current_manifests()
        now = self.now()
        view = fleet.select(await self.registry.fleet_rows(), q, now,
                            self.registry.stale_after_s, current)
        rows = fleet.page_records(view, await self.registry.records(
            [row.node_id for row, _ in view.rows]))
        if api:
            return _json(200, {**fleet.fleet_json(view, rows, q, now), "as_of": now},
                         route="/api/v1/fleet")
        return html_response(200, pages.fleet_page(view, rows, q, now), "/fleet")

    async def _node(self, node_id: str, api: bool) -> Response:
        if not layout.is_hex_id(node_id):
            return self._error(404, "Not found", "no such node (a node id is 64 hex digits)",
                               api)
        now = self.now()
        rec = (await self.registry.records([node_id])).get(node_id)
        if rec is None:
            return self._error(404, "Not found", "this hub has not heard from that node", api)
        state = fleet.fleet_state(fleet_row(rec), now, self.registry.stale_after_s,
                                  await self._current_manifests())
        events = await self.registry.history(node_id)
        if api:
            return _json(200, {**fleet.node_json(rec, now, state), "history": [
                {"at": e.at, "kind": e.kind, "detail": e.detail} for e in events]},
                route="/api/v1/nodes/node")
        return html_response(200, pages.node_page(rec, state, events, now), "/fleet/node")

    # -- releases -----------------------------------------------------------------------

    async def _releases(self, r: Request, api: bool) -> Response:
        from zosnode.agent.upgrade import rollout_paused, rollout_release
        from zosnode.hub.objects import release_version, root_version

        now = self.now()
        roots = sorted(v for n in await self.storage.list(layout.ROOTS)
                       if (v := root_version(n)))
        summary = await self.registry.summary(now)
        channels = []
        for name in await self.storage.list(layout.CHANNELS):
            if not _is_channel(name):
                continue
            versions = sorted((v for n in await self.storage.list(paths.releases_folder(name))
                               if (v := release_version(n))), reverse=True)
            history = []
            for v in versions[:HISTORY_SHOWN]:
                m = await self._manifest(paths.release_path(name, v))
                if m is not None:
                    history.append(pages.ReleaseInfo(
                        m.version, m.issued_at, m.rollout_ppm, rollout_paused(m),
                        rollout_release(m), len(m.flists), len(m.services)))
            current_m = await self._manifest(layout.manifest_path(name))
            current = next((h for h in history if current_m and h.version == current_m.version),
                           None)
            if current is None and current_m is not None:
                current = pages.ReleaseInfo(
                    current_m.version, current_m.issued_at, current_m.rollout_ppm,
                    rollout_paused(current_m), rollout_release(current_m),
                    len(current_m.flists), len(current_m.services))
            nodes = {rel: n for (c, rel), n in summary.by_release.items() if c == name}
            channels.append(pages.ChannelInfo(name, current, tuple(history), len(versions),
                                              nodes))
        hub = self._hub_url(r)
        if api:
            return _json(200, pages.releases_json(channels, roots, hub),
                         route="/api/v1/releases")
        return html_response(200, pages.releases_page(channels, roots, hub, now), "/releases")


def _is_channel(name: str) -> bool:
    try:
        layout.check_channel(name)
    except layout.LayoutError:
        return False
    return True
