"""Pausing a rollout with the command the Releases page shows: a node polling
during the pause stays on its release; after `resume` it upgrades.

The node here is the node's own polling chain without the mounts: the
agent's `HubClient` (conditional GET of the channel manifest), the
`Verifier` from a trust anchor, and `UpgradePolicy`, the decision
`zosnode.agent.boot.node` acts on. The commands are the real CLI, run as
subprocesses, signing with key files and publishing through the hub.
"""

from __future__ import annotations

import html
import json
import re
import shlex
import sys
import time
from pathlib import Path

import nacl.signing
import trio

from tests.web.conftest import PUBLISHER, SIGNER, TOP, WebHub, manifest
from zosnode.agent.boot.hubs import HubClient
from zosnode.agent.upgrade import Ignore, Stage, UpgradePolicy
from zosnode.fetch.fetcher import Fetcher
from zosnode.http.client import HttpClient, Timeouts
from zosnode.trust.errors import Refused
from zosnode.trust.keyfile import HEADER
from zosnode.trust.signing import make_anchor
from zosnode.trust.verifier import Verifier


class PollingNode:
    """The node's poll → verify → decide chain, against one hub."""

    def __init__(self, hub: str, node_id: str, root: bytes) -> None:
        http = HttpClient(timeouts=Timeouts(connect=5, head=10, body_idle=10))
        self.hubs = HubClient([hub], "stable", fetcher=Fetcher([hub], client=http))
        self.verifier = Verifier(make_anchor(root, 0, 0))
        self.policy = UpgradePolicy(node_id)

    async def poll(self) -> str:
        data = await self.hubs.manifest()
        if data is None:
            return "not modified"
        m = self.verifier.verify_manifest(data, channel="stable", now=int(time.time()),
                                          agent_version="1.0").manifest
        decision = self.policy.offer(m)
        if isinstance(decision, Stage):
            self.policy.staged_ready()  # its services came up
            return f"switched to {m.version}"
        assert isinstance(decision, Ignore)
        return decision.why.name.lower()


def keyfile(path: Path, key: nacl.signing.SigningKey) -> Path:
    path.write_text(f"{HEADER}\n{bytes(key).hex()}\n")
    path.chmod(0o600)
    return path


async def page_command(hub: WebHub, verb: str) -> list[str]:
    _, _, body = await trio.to_thread.run_sync(hub.request, "GET", "/releases")
    block = re.search(r'<pre class="command">(.*?)</pre>', body.decode(), re.S)
    assert block is not None
    for line in html.unescape(block.group(1)).splitlines():
        if line.startswith(f"zosnode release {verb} "):
            return shlex.split(line)
    raise AssertionError(f"the page shows no `release {verb}` command: {block.group(1)}")


async def run_shown(argv: list[str], keys: dict[str, Path]) -> str:
    argv = [str(keys.get(a, a)) for a in argv]
    assert argv[0] == "zosnode"
    proc = await trio.run_process([sys.executable, "-m", *argv], capture_stdout=True,
                                  capture_stderr=True, check=False, cwd=TOP)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode()


async def test_pause_from_the_page_command_holds_nodes_and_resume_upgrades_them(
        web_hub: WebHub, tmp_path: Path) -> None:
    keys = {"SIGNER.key": keyfile(tmp_path / "signer.key", SIGNER),
            "PUBLISHER.key": keyfile(tmp_path / "publisher.key", PUBLISHER),
            "TRUSTED.root": web_hub.data / "roots" / "1.root"}
    root = (web_hub.data / "roots" / "1.root").read_bytes()
    web_hub.publish(manifest("stable", 1))
    behind = PollingNode(web_hub.url, "aa" * 32, root)
    ahead = PollingNode(web_hub.url, "bb" * 32, root)
    with trio.fail_after(120):
        assert await behind.poll() == "switched to 1"
        assert await ahead.poll() == "switched to 1"
        await trio.to_thread.run_sync(web_hub.publish, manifest("stable", 2))
        assert await ahead.poll() == "switched to 2"  # polled before the pause

        out = await run_shown(await page_command(web_hub, "pause"), keys)
        assert "published manifest stable v3" in out and "paused" in out
        assert await behind.poll() == "paused"
        assert await behind.poll() == "not modified"  # the node keeps polling, stays
        assert behind.policy.current == 1
        assert await ahead.poll() == "same"  # a re-issue of the release it runs

        out = await run_shown(await page_command(web_hub, "resume"), keys)
        assert "published manifest stable v4" in out
        assert await behind.poll() == "switched to 4"
        assert behind.policy.current_release == 2  # release 2's contents, re-issued
        assert await ahead.poll() == "same"

        # Raising the fraction and promoting are the same kind of signed operation.
        argv = await page_command(web_hub, "rollout")
        assert "--fraction" in argv
        await run_shown(argv, keys)
        argv = await page_command(web_hub, "promote")
        argv[argv.index("OTHER-CHANNEL")] = "testing"
        await run_shown(argv, keys)
    _, _, body = await trio.to_thread.run_sync(web_hub.request, "GET", "/api/v1/releases")
    doc = {c["channel"]: c for c in json.loads(body)["channels"]}
    assert doc["stable"]["current"] == {**doc["stable"]["current"], "version": 5,
                                        "release": 2, "paused": False, "rollout_ppm": 500_000}
    assert doc["testing"]["current"]["version"] == 1


async def test_a_mirror_cannot_forge_a_pause(web_hub: WebHub, tmp_path: Path) -> None:
    """The pause is in the signed manifest: one a mirror writes is refused, and the
    node then upgrades with the next genuine release."""
    from zosnode.agent.upgrade import ROLLOUT_KEY
    from zosnode.trust.envelope import Envelope
    from zosnode.trust.signing import encode_envelope, encode_manifest, with_signature

    root = (web_hub.data / "roots" / "1.root").read_bytes()
    web_hub.publish(manifest("stable", 1))
    node = PollingNode(web_hub.url, "cc" * 32, root)
    with trio.fail_after(60):
        assert await node.poll() == "switched to 1"
        forged = manifest("stable", 9, metadata={ROLLOUT_KEY: {"of": 9, "paused": True}})
        mallory = nacl.signing.SigningKey.generate()
        data = encode_envelope(with_signature(Envelope("manifest", encode_manifest(forged)),
                                              mallory))
        path = web_hub.data / "channels" / "stable" / "manifest"
        genuine = path.read_bytes()
        path.write_bytes(data)  # what a hostile mirror serves
        try:
            await node.poll()
            raise AssertionError("a manifest signed by an unknown key was accepted")
        except Refused:
            pass
        path.write_bytes(genuine)
        await trio.to_thread.run_sync(web_hub.publish, manifest("stable", 2))
        assert await node.poll() == "switched to 2"


def test_steering_mistakes_are_one_line_and_exit_2(web_hub: WebHub, tmp_path: Path) -> None:
    import subprocess

    web_hub.publish(manifest("stable", 1))
    signer = keyfile(tmp_path / "s.key", SIGNER)
    trusted = ["--root", str(web_hub.data / "roots" / "1.root")]
    for argv, why in (
        (["rollout", "--channel", "stable", "--fraction", "2", "--key", str(signer)],
         "between 0 and 1"),
        (["rollout", "--channel", "stable", "--fraction", "half"], "percentage"),
        (["pause", "--channel", "stable"], "give --key"),
        (["pause", "--channel", "stable", "--key", str(signer)], "--publisher-key"),
        (["resume", "--channel", "stable", "--key", str(signer)], "not paused"),
        (["pause", "--channel", "nosuch", "--key", str(signer)], "no published release"),
        (["pause", "--channel", "Bad/Name", "--key", str(signer)], "bad channel name"),
        (["promote", "--from", "stable", "--to", "stable"], "same channel"),
    ):
        proc = subprocess.run([sys.executable, "-m", "zosnode", "release", *argv[:1],
                               "--hub", web_hub.url, *trusted, *argv[1:]], capture_output=True,
                              text=True, cwd=TOP, timeout=60)
        assert proc.returncode == 2 and why in proc.stderr, (argv, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    out = tmp_path / "v2.manifest"
    proc = subprocess.run([sys.executable, "-m", "zosnode", "release", "pause", "--hub",
                           web_hub.url, *trusted, "--channel", "stable", "-o", str(out)],
                          capture_output=True, text=True, cwd=TOP, timeout=60)
    assert proc.returncode == 0 and "0 signature(s)" in proc.stdout and out.exists()


def test_steering_refuses_a_manifest_the_operator_does_not_trust(
        web_hub: WebHub, tmp_path: Path) -> None:
    """The signers re-sign what the hub serves: a hub or mirror that forged it (here
    other contents under a stranger's signature) must not get it signed."""
    import subprocess

    from zosnode.trust.envelope import Envelope
    from zosnode.trust.signing import encode_envelope, encode_manifest, with_signature

    web_hub.publish(manifest("stable", 1))
    path = web_hub.data / "channels" / "stable" / "manifest"
    genuine = path.read_bytes()
    forged = manifest("stable", 7, metadata={"note": "not what the signers published"})
    path.write_bytes(encode_envelope(with_signature(
        Envelope("manifest", encode_manifest(forged)), nacl.signing.SigningKey.generate())))
    signer = keyfile(tmp_path / "s.key", SIGNER)
    publisher = keyfile(tmp_path / "p.key", PUBLISHER)
    proc = subprocess.run(
        [sys.executable, "-m", "zosnode", "release", "pause", "--hub", web_hub.url,
         "--root", str(web_hub.data / "roots" / "1.root"), "--channel", "stable",
         "--key", str(signer), "--publisher-key", str(publisher)],
        capture_output=True, text=True, cwd=TOP, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "does not verify against the trust you gave" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert path.read_bytes() != genuine  # nothing was published over it
    assert b"not what the signers published" in path.read_bytes()
