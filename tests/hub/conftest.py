"""Hub test fixtures: a data directory in the shared layout and a live hub.

The hub runs on 127.0.0.1 in a background thread with its own trio loop, so
blocking clients (curl, http.client, raw sockets) can talk to it; it is shut
down gracefully through its trio token at the end of each test. Where a test
must show that the process itself survives, `spawn_hub` runs the real
`zosnode hub serve` command instead.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import nacl.signing
import pytest
import trio

from zosnode.http.server import Limits
from zosnode.hub.service import RunningHub, run_hub
from zosnode.hub.storage import LocalStorage, Storage


def bid(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=32).hexdigest()


def put_block(data_dir: Path, data: bytes) -> str:
    b = bid(data)
    path = data_dir / "blocks" / b[:2] / b
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return b


@dataclass
class LiveHub:
    url: str
    host: str
    port: int
    hub: RunningHub
    token: trio.lowlevel.TrioToken

    def shutdown(self) -> None:
        trio.from_thread.run_sync(self.hub.server.shutdown, trio_token=self.token)


def start_hub(storage: Storage, *, publishers: tuple[str, ...] = (),
              limits: Limits | None = None) -> tuple[LiveHub, Callable[[], None]]:
    ready = threading.Event()
    box: dict[str, object] = {}

    async def main() -> None:
        box["token"] = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            hub = await nursery.start(lambda task_status: run_hub(
                storage, "127.0.0.1:0", publishers=publishers, limits=limits,
                task_status=task_status))
            box["hub"] = hub
            ready.set()

    def runner() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            box["error"] = exc
            ready.set()

    thread = threading.Thread(target=runner, daemon=True)
    thread.start()
    if not ready.wait(20) or "error" in box:
        raise RuntimeError(f"hub did not start: {box.get('error')}")
    hub = box["hub"]
    assert isinstance(hub, RunningHub)
    token = box["token"]
    assert isinstance(token, trio.lowlevel.TrioToken)
    host, port = hub.addresses[0]
    live = LiveHub(hub.url, host, port, hub, token)

    def stop() -> None:
        if thread.is_alive():
            try:
                live.shutdown()
            except trio.RunFinishedError:
                pass
        thread.join(30)
        assert not thread.is_alive(), "hub did not stop"
        if "error" in box:
            raise box["error"]  # type: ignore[misc]

    return live, stop


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    for sub in ("blocks", "flists", "roots", "channels"):
        (d / sub).mkdir(parents=True)
    return d


@pytest.fixture
def publisher_key() -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(hashlib.sha256(b"test publisher").digest())


@pytest.fixture
def live_hub(data_dir: Path, publisher_key: nacl.signing.SigningKey) -> Iterator[LiveHub]:
    live, stop = start_hub(LocalStorage(str(data_dir)),
                           publishers=(publisher_key.verify_key.encode().hex(),),
                           limits=Limits(max_body_bytes=8 * 1024 * 1024,
                                         max_header_bytes=8 * 1024,
                                         idle_timeout_s=5, head_timeout_s=3))
    try:
        yield live
    finally:
        stop()


@pytest.fixture
def big_block(data_dir: Path) -> tuple[str, bytes]:
    data = os.urandom(3 * 1024 * 1024 + 17)  # over INLINE_MAX: served by sendfile
    return put_block(data_dir, data), data


@pytest.fixture
def small_block(data_dir: Path) -> tuple[str, bytes]:
    data = os.urandom(4096)
    return put_block(data_dir, data), data


REPO = Path(__file__).resolve().parents[2]


@dataclass
class HubProcess:
    """A real `zosnode hub serve` process on 127.0.0.1, its stderr in a file."""

    proc: subprocess.Popen[bytes]
    host: str
    port: int
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("hub did not stop on SIGTERM") from None


def spawn_hub(data_dir: Path, log: Path, *args: str) -> HubProcess:
    """Start `zosnode hub serve --data DATA --listen 127.0.0.1:0 ARGS`; wait for its port."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "zosnode", "hub", "serve", "--data", str(data_dir),
             "--listen", "127.0.0.1:0", *args],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    end = time.monotonic() + 30
    while True:
        found = re.search(r"listening on 127\.0\.0\.1:(\d+)", log.read_text(errors="replace"))
        if found:
            return HubProcess(proc, "127.0.0.1", int(found.group(1)), log)
        if proc.poll() is not None or time.monotonic() > end:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"hub did not start: {log.read_text(errors='replace')}")
        time.sleep(0.05)
