"""iPXE script and dnsmasq configuration rendering."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from zosnode.bootmedia.dnsmasq import DhcpConfig, render_dnsmasq
from zosnode.bootmedia.errors import BuildInputError
from zosnode.bootmedia.ipxe import BootConfig, kernel_cmdline, render_ipxe

HUBS = ("http://10.0.0.1:8080", "https://hub.example.net/zos/")


def test_script_tries_each_hub_in_order_then_waits() -> None:
    script = render_ipxe(BootConfig("farm-7", "stable", HUBS, timeout_ms=20_000))
    lines = script.splitlines()
    assert lines[0] == "#!ipxe"
    kernels = [ln for ln in lines if ln.startswith("kernel ")]
    assert [k.split()[5] for k in kernels] == [
        "http://10.0.0.1:8080/boot/stable/vmlinuz",
        "https://hub.example.net/zos/boot/stable/vmlinuz"]
    assert kernels[0].endswith("|| goto hub1") and kernels[1].endswith("|| goto wait")
    assert all("--timeout 20000" in k for k in kernels)
    assert lines[lines.index(":wait") + 2].endswith("goto start")
    assert lines[-1] == "goto start"


def test_cmdline_carries_farm_channel_hubs_and_init_args() -> None:
    line = kernel_cmdline(BootConfig("f1", "beta", HUBS, extra_args=("quiet",)))
    assert "zos.farm=f1 zos.channel=beta" in line
    assert "zos.hub=http://10.0.0.1:8080 zos.hub=https://hub.example.net/zos " in line
    assert line.endswith("quiet -- node run")
    assert "-- " not in kernel_cmdline(BootConfig("f1", "beta", HUBS, init_args=()))


@pytest.mark.parametrize("kwargs", [
    dict(farm="a b"), dict(farm=""), dict(channel="x;reboot"), dict(hubs=()),
    dict(hubs=("ftp://x",)), dict(hubs=("http://x/${evil}",)), dict(hubs=("http://a,b",)),
    dict(extra_args=("a b",)), dict(extra_args=("${ip}",)), dict(timeout_ms=5),
])
def test_injection_and_nonsense_refused(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = dict(farm="f", channel="c", hubs=HUBS)
    base.update(kwargs)
    with pytest.raises(BuildInputError):
        BootConfig(**base)  # type: ignore[arg-type]


def test_dnsmasq_modes() -> None:
    full = render_dnsmasq(DhcpConfig("br0", "/srv/tftp", "10.99.0.0/24", "10.99.0.50",
                                     "10.99.0.99"))
    assert "dhcp-range=10.99.0.50,10.99.0.99,255.255.255.0,1h" in full
    assert "dhcp-boot=tag:ipxe,boot.ipxe" in full and "enable-ra" in full
    proxy = render_dnsmasq(DhcpConfig("br0", "/srv/tftp", "10.99.0.0/24"))
    assert "dhcp-range=10.99.0.0,proxy" in proxy and "pxe-service=" in proxy
    for bad in (dict(range_start="10.1.0.5", range_end="10.1.0.9"), dict(range_start="10.99.0.5"),
                dict(interface="br0\nx"), dict(tftp_root="rel"), dict(script="a b")):
        args: dict[str, object] = dict(interface="br0", tftp_root="/t", network="10.99.0.0/24")
        args.update(bad)
        with pytest.raises(BuildInputError):
            DhcpConfig(**args)  # type: ignore[arg-type]


@pytest.mark.skipif(shutil.which("dnsmasq") is None, reason="needs dnsmasq (dnsmasq-base)")
@pytest.mark.parametrize("proxy", [False, True])
def test_dnsmasq_accepts_the_config(tmp_path: Path, proxy: bool) -> None:
    rng = (None, None) if proxy else ("10.99.0.50", "10.99.0.99")
    conf = tmp_path / "dnsmasq.conf"
    conf.write_text(render_dnsmasq(DhcpConfig("br0", str(tmp_path), "10.99.0.0/24", *rng)))
    proc = subprocess.run(["dnsmasq", "--test", f"--conf-file={conf}"], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


def test_boot_files_may_live_apart_from_the_hubs() -> None:
    cfg = BootConfig("f", "c", ("http://hub:8080",), boot_urls=("http://cdn/a", "http://cdn2"))
    script = render_ipxe(cfg)
    assert "http://cdn/a/boot/c/vmlinuz" in script and "http://cdn2/boot/c/initramfs.img" in script
    assert "http://hub:8080/boot" not in script and "zos.hub=http://hub:8080 " in script


def test_grub_config_tries_plain_http_hubs_in_order() -> None:
    from zosnode.bootmedia.grub import render_grub

    cfg = BootConfig("f", "c", ("https://secure.example", "http://10.0.0.1:8080/zos"))
    text = render_grub(cfg)
    assert "(http,10.0.0.1:8080)/zos/boot/c/vmlinuz" in text
    assert "secure.example" not in text.split("zos.hub=")[0]  # no TLS in GRUB: skipped
    assert text.rstrip().endswith("done") and "sleep 5" in text
    with pytest.raises(BuildInputError, match="plain http"):
        render_grub(BootConfig("f", "c", ("https://only.example",)))
