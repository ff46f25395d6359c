"""The hub serves each channel's boot files and renders a farm's iPXE script."""

from __future__ import annotations

import http.client
from pathlib import Path

from tests.hub.conftest import LiveHub


def request(live: LiveHub, path: str, host: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(live.host, live.port, timeout=10)
    headers = {"Host": host} if host is not None else {}
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, body


def test_boot_files_are_served_from_the_data_directory(live_hub: LiveHub, data_dir: Path) -> None:
    boot = data_dir / "boot" / "stable"
    boot.mkdir(parents=True)
    (boot / "vmlinuz").write_bytes(b"kernel bytes")
    (boot / "initramfs.img").write_bytes(b"initramfs bytes")
    (boot / "other").write_bytes(b"not a boot file")
    assert request(live_hub, "/boot/stable/vmlinuz") == (200, b"kernel bytes")
    assert request(live_hub, "/boot/stable/initramfs.img") == (200, b"initramfs bytes")
    assert request(live_hub, "/boot/stable/other")[0] == 404
    assert request(live_hub, "/boot/../stable/vmlinuz")[0] == 404


def test_ipxe_script_points_at_this_hub(live_hub: LiveHub) -> None:
    status, body = request(live_hub, "/api/v1/bootstrap/farm-7/stable/boot.ipxe",
                           host="hub.example:8080")
    assert status == 200
    script = body.decode()
    assert script.startswith("#!ipxe")
    assert "http://hub.example:8080/boot/stable/vmlinuz" in script
    assert "zos.farm=farm-7" in script and "zos.channel=stable" in script
    assert "zos.hub=http://hub.example:8080" in script


def test_ipxe_script_refuses_hostile_names(live_hub: LiveHub) -> None:
    status, body = request(live_hub, "/api/v1/bootstrap/farm%20x/stable/boot.ipxe")
    assert status == 400 and b"farm" in body
    status, _ = request(live_hub, "/api/v1/bootstrap/f/stable/boot.ipxe", host="evil host ${x}")
    assert status == 400
