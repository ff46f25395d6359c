"""Concurrent publications cannot land out of order."""

from __future__ import annotations

import time
from pathlib import Path

import trio

from tests.hub.releases import key, signed_manifest, signed_root
from zosnode.hub.publish import Publisher, PublishRefused, stored_manifest
from zosnode.hub.storage import LocalStorage

ROOT_KEYS = [key("race-a")]


class SlowStorage(LocalStorage):
    """Writes take a while, so two publications overlap."""

    async def put(self, key: str, data: bytes) -> None:
        await trio.sleep(1)
        await super().put(key, data)


async def test_older_manifest_cannot_overtake_a_newer_one(
        autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    storage = SlowStorage(str(tmp_path))
    await storage.prepare()
    pub = Publisher(storage)
    await pub.put("roots/1.root", signed_root(1, ROOT_KEYS, ROOT_KEYS, 1), int(time.time()))
    outcomes: dict[int, str] = {}

    async def publish(version: int, delay: float) -> None:
        await trio.sleep(delay)
        try:
            await pub.put("channels/stable/manifest",
                          signed_manifest("stable", version, ROOT_KEYS), int(time.time()))
            outcomes[version] = "stored"
        except PublishRefused as exc:
            outcomes[version] = exc.reason

    async with trio.open_nursery() as nursery:
        nursery.start_soon(publish, 3, 0)
        nursery.start_soon(publish, 2, 0.1)  # checks while v3 is still being written
    assert outcomes == {3: "stored", 2: "not-newer"}
    data = (tmp_path / "channels/stable/manifest").read_bytes()
    assert stored_manifest(data).version == 3
