"""The signed UKI, its farm settings and the Secure Boot state, without a VM.

Building uses the real systemd stub, objcopy and sbsign with stand-in kernel
and initramfs bytes (the firmware's verdict is test_secureboot.py's).
"""

from __future__ import annotations

import http.client
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import nacl.signing
import pytest

from tests.boot.conftest import TOP
from tests.hub.conftest import LiveHub, data_dir, live_hub, publisher_key  # noqa: F401
from zosnode.agent import cmdline, secureboot, settings
from zosnode.bootmedia import secureboot as keys
from zosnode.bootmedia import uki
from zosnode.bootmedia.errors import BuildInputError, FormatError
from zosnode.bootmedia.ipxe import BootConfig, render_ipxe, render_settings
from zosnode.bootmedia.media import build_efi_image

HUB = "http://10.0.0.1:8080"


def _need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} (binutils, sbsigntool, openssl, mtools)")
    if not uki.STUB.exists():
        pytest.skip(f"needs {uki.STUB} (Debian package systemd-boot-efi)")


@pytest.fixture
def parts(tmp_path: Path) -> tuple[Path, Path]:
    kernel, initrd = tmp_path / "vmlinuz", tmp_path / "initramfs.img"
    kernel.write_bytes(bytes(range(256)) * 300 + b"kernel")
    initrd.write_bytes(b"\x1f\x8b" + bytes(70_001))
    return kernel, initrd


@pytest.fixture(scope="module")
def keyset(tmp_path_factory: pytest.TempPathFactory) -> keys.KeySet:
    _need("openssl")
    return keys.make_keys(tmp_path_factory.mktemp("keys") / "farm")


# -- the image ---------------------------------------------------------------------


def test_built_twice_is_byte_identical_and_carries_each_part(parts: tuple[Path, Path],
                                                            tmp_path: Path) -> None:
    _need("objcopy")
    kernel, initrd = parts
    cfg = uki.UkiConfig(extra_args=("quiet",), uname="6.1.0-56-cloud-amd64")
    first, second = tmp_path / "a.efi", tmp_path / "b.efi"
    uki.build_uki(kernel, initrd, first, cfg)
    uki.build_uki(kernel, initrd, second, cfg)
    data = first.read_bytes()
    assert data == second.read_bytes()
    lay = uki.pe_layout(data)
    assert set(uki.SECTIONS) <= set(lay.sections)
    assert struct.unpack_from("<I", data, lay.timestamp_offset)[0] == 0  # objcopy stamped it
    assert struct.unpack_from("<I", data, lay.checksum_offset)[0] == \
        uki.pe_checksum(data, lay.checksum_offset)

    def section(name: str) -> bytes:
        off, size = uki.section_bytes(data, name)
        return data[off:off + size]

    assert section(".linux").startswith(kernel.read_bytes())
    assert section(".initrd").startswith(initrd.read_bytes())
    line = section(".cmdline").rstrip(b"\0").decode()
    assert line == uki.cmdline(cfg) and "zos." not in line and line.endswith("-- node run")
    assert b"ID=zosnode" in section(".osrel")
    # A different initramfs gives a different image (the inputs are all in it).
    initrd.write_bytes(initrd.read_bytes() + b"x")
    uki.build_uki(kernel, initrd, second, cfg)
    assert second.read_bytes() != data


def test_pe_checksum_matches_the_stubs_own() -> None:
    _need()
    data = uki.STUB.read_bytes()
    lay = uki.pe_layout(data)
    stored = struct.unpack_from("<I", data, lay.checksum_offset)[0]
    assert stored != 0 and uki.pe_checksum(data, lay.checksum_offset) == stored


@pytest.mark.parametrize("blob", [b"", b"MZ" + bytes(100), b"\x7fELF" + bytes(200)])
def test_not_a_pe_image_is_refused(blob: bytes) -> None:
    with pytest.raises(FormatError):
        uki.pe_layout(blob)


@pytest.mark.parametrize("kwargs", [dict(extra_args=("zos.hub=http://x",)),
                                    dict(extra_args=("a b",)), dict(init_args=("${x}",)),
                                    dict(uname="6.1 evil")])
def test_config_refuses_farm_keys_and_odd_words(kwargs: dict[str, object]) -> None:
    with pytest.raises(BuildInputError):
        uki.UkiConfig(**kwargs)  # type: ignore[arg-type]


def test_signature_checks_out_only_for_its_key_and_bytes(parts: tuple[Path, Path],
                                                         tmp_path: Path,
                                                         keyset: keys.KeySet) -> None:
    _need("objcopy", "sbsign", "sbverify")
    unsigned, signed = tmp_path / "u.efi", tmp_path / "s.efi"
    uki.build_uki(*parts, unsigned)
    uki.sign(unsigned, signed, keyset.key("db"), keyset.cert("db"))
    stranger = keys.make_keys(tmp_path / "stranger", "stranger")
    assert uki.verify(signed, keyset.cert("db"))
    assert not uki.verify(signed, stranger.cert("db"))
    assert not uki.verify(unsigned, keyset.cert("db"))
    data = bytearray(signed.read_bytes())
    off, size = uki.section_bytes(bytes(data), ".initrd")
    data[off + size // 2] ^= 1
    tampered = tmp_path / "t.efi"
    tampered.write_bytes(data)
    assert not uki.verify(tampered, keyset.cert("db"))


def test_keys_are_a_full_set_and_never_overwritten(keyset: keys.KeySet) -> None:
    for name in keys.KEY_NAMES:
        assert keyset.key(name).stat().st_mode & 0o077 == 0
        text = subprocess.run(["openssl", "x509", "-in", str(keyset.cert(name)), "-noout",
                               "-text"], capture_output=True, text=True, check=True).stdout
        assert "Public-Key: (2048 bit)" in text and f"CN = zosnode farm {name}" in text
    assert len(keyset.owner) == 36
    with pytest.raises(BuildInputError, match="not overwritten"):
        keys.make_keys(keyset.directory)


def test_ovmf_store_gets_the_keys_with_secure_boot_on(keyset: keys.KeySet,
                                                      tmp_path: Path) -> None:
    template = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
    if not template.exists():
        pytest.skip(f"needs {template} (Debian package ovmf)")
    try:
        tool = keys.virt_fw_vars()
    except BuildInputError as exc:
        pytest.skip(str(exc))
    out = tmp_path / "vars.fd"
    keys.enrol_ovmf(keyset, template, out)
    listing = subprocess.run([tool, "-i", str(out), "-p"], capture_output=True, text=True,
                             check=True).stdout
    assert "SecureBootEnable    : bool: ON" in listing
    keys.enrol_ovmf(keyset, template, out, secure_boot=False)
    off = subprocess.run([tool, "-i", str(out), "-p"], capture_output=True, text=True,
                         check=True).stdout
    assert "SecureBootEnable    : bool: off" in off and "PK " in off
    for var in ("PK", "KEK", "db"):
        assert any(line.split(":")[0].strip() == var for line in listing.splitlines()), listing


# -- media and loader ------------------------------------------------------------------


def test_efi_image_is_the_uki_with_the_farm_settings_beside_it(parts: tuple[Path, Path],
                                                              tmp_path: Path) -> None:
    _need("objcopy", "mcopy", "mformat")
    image, medium = tmp_path / "u.efi", tmp_path / "esp.img"
    uki.build_uki(*parts, image)
    cfg = BootConfig("farm-7", "beta", (HUB,))
    build_efi_image(cfg, medium, uki=image)
    boot = subprocess.run(["mtype", "-i", str(medium), "::/EFI/BOOT/BOOTX64.EFI"],
                          capture_output=True, check=True).stdout
    assert boot == image.read_bytes()
    cred = subprocess.run(["mtype", "-i", str(medium),
                           "::/loader/credentials/zosnode.cred"],
                          capture_output=True, check=True).stdout.decode()
    assert cred == render_settings(cfg) == f"zos.farm=farm-7 zos.channel=beta zos.hub={HUB}\n"
    with pytest.raises(BuildInputError):
        build_efi_image(cfg, medium, uki=tmp_path / "missing.efi")


def test_ipxe_script_chains_the_uki_on_efi_only() -> None:
    cfg = BootConfig("f", "c", (HUB, "http://10.0.0.2"), uki=True)
    lines = render_ipxe(cfg).splitlines()
    assert lines.index("iseq ${platform} efi && goto uki0 || goto hub0") < lines.index(":hub0")
    chains = [ln for ln in lines if ln.startswith("chain ")]
    assert [c.split()[5] for c in chains] == [f"{HUB}/boot/c/zosnode.efi",
                                              "http://10.0.0.2/boot/c/zosnode.efi"]
    assert chains[0].endswith("|| goto uki1") and chains[1].endswith("|| goto wait")
    # The stub opens `<image name>.extra.d`: the leading dot makes iPXE open its root.
    assert all("--name .zosnode.efi " in c and "initrd=" not in c for c in chains)
    fetches = [ln for ln in lines if ln.startswith("imgfetch ")]
    assert fetches and all(f.split()[5] == "zosnode.cred" for f in fetches)  # beside the script
    assert "chain " not in render_ipxe(BootConfig("f", "c", (HUB,)))  # not asked for: as before


# -- the node side ------------------------------------------------------------------


def test_settings_take_only_per_farm_keys_and_refuse_trust_keys() -> None:
    p = settings.parse("zos.farm=f1 zos.channel=beta zos.hub=http://10.0.0.1:8080 "
                       "zos.root=deadbeef zos.trust.key=x zos.cache.format=/dev/sda "
                       "init=/usr/bin/python3.11 zos.hub=ftp://x")
    assert (p.config.farm, p.config.channel, p.config.hubs) == ("f1", "beta",
                                                                ("http://10.0.0.1:8080",))
    text = "\n".join(p.notes)
    assert all(n.startswith("settings: ") for n in p.notes)
    assert text.count("trust root is never taken") == 2
    assert "'zos.cache.format': not a per-farm setting" in text
    assert "'init': the settings carry zos.* keys only" in text
    assert "ignored zos.hub='ftp://x'" in text


def test_the_command_line_wins_over_the_settings() -> None:
    s = settings.parse("zos.farm=f1 zos.channel=beta zos.hub=http://a")
    both = cmdline.parse("console=ttyS0 zos.channel=stable -- node run", s.config).config
    assert (both.farm, both.channel, both.hubs) == ("f1", "stable", ("http://a",))
    signed_only = cmdline.parse("console=ttyS0 panic=10 -- node run", s.config).config
    assert (signed_only.farm, signed_only.channel) == ("f1", "beta")


def test_settings_file_missing_long_or_binary(tmp_path: Path) -> None:
    assert settings.load((tmp_path / "none.cred",)) == settings.NONE
    path, second = tmp_path / "zosnode.cred", tmp_path / "global.cred"
    second.write_text("zos.farm=second")
    assert settings.load((path, second)).config.farm == "second"  # the first that exists
    path.write_bytes(b"zos.farm=f " + b"x" * 5000)
    assert any("longer than" in n for n in settings.load((path, second)).notes)
    path.write_bytes(b"\xff\xfe zos.farm=f\x00")
    assert settings.load((path,)).config.farm is None  # "f\x00" is no farm name


@pytest.mark.parametrize("efi, mounted, value, want", [
    (False, False, None, "bios"), (True, False, None, "unknown"), (True, True, None, "off"),
    (True, True, b"\x06\x00\x00\x00\x01", "on"), (True, True, b"\x06\x00\x00\x00\x00", "off"),
    (True, True, b"\x06\x00\x00\x00\x02", "unknown"), (True, True, b"\x01", "unknown"),
])
def test_secure_boot_state(efi: bool, mounted: bool, value: bytes | None, want: str) -> None:
    assert secureboot.state(efi, mounted, value) == want
    assert want in ("on", "off", "bios", "unknown")  # the states docs/boot-trust.md names


# -- CLI and hub ----------------------------------------------------------------------


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zosnode", "bootstrap", *argv],
                          capture_output=True, text=True, timeout=120, cwd=TOP)


def test_cli_builds_signs_and_refuses_in_one_line(parts: tuple[Path, Path], tmp_path: Path,
                                                  keyset: keys.KeySet) -> None:
    _need("objcopy", "sbsign")
    kernel, initrd = parts
    out = tmp_path / "zosnode.efi"
    proc = _cli("uki", "--kernel", str(kernel), "--initramfs", str(initrd), "--key",
                str(keyset.key("db")), "--cert", str(keyset.cert("db")), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert uki.verify(out, keyset.cert("db"))
    for argv in (["--unsigned", "--key", str(keyset.key("db"))], [],
                 ["--unsigned", "--kernel-arg", "zos.farm=x"]):
        bad = _cli("uki", "--kernel", str(kernel), "--initramfs", str(initrd), *argv,
                   "-o", str(tmp_path / "x.efi"))
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    medium = _cli("efi", "--uki", str(out), "--farm", "f", "--hub", HUB, "--kernel-arg", "quiet",
                  "-o", str(tmp_path / "esp.img"))
    assert medium.returncode == 2 and "signed into the UKI" in medium.stderr
    again = _cli("secureboot-keys", "--out", str(keyset.directory))
    assert again.returncode == 2 and "not overwritten" in again.stderr


def _get(live: LiveHub, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection(live.host, live.port, timeout=10)
    conn.request("GET", path, headers={"Host": "hub.example:8080"})
    r = conn.getresponse()
    body = r.read().decode()
    conn.close()
    return r.status, body


def test_hub_serves_the_uki_its_script_and_the_settings(
        live_hub: LiveHub, data_dir: Path,  # noqa: F811
        publisher_key: nacl.signing.SigningKey) -> None:  # noqa: F811
    status, script = _get(live_hub, "/api/v1/bootstrap/farm-7/stable/boot.ipxe")
    assert status == 200 and "zosnode.efi" not in script  # no UKI published: as before
    boot = data_dir / "boot" / "stable"
    boot.mkdir(parents=True)
    (boot / "zosnode.efi").write_bytes(b"MZ signed image")
    assert _get(live_hub, "/boot/stable/zosnode.efi") == (200, "MZ signed image")
    status, script = _get(live_hub, "/api/v1/bootstrap/farm-7/stable/boot.ipxe")
    assert status == 200
    assert "chain --name .zosnode.efi --timeout 30000 http://hub.example:8080/boot/stable/" \
           "zosnode.efi" in script
    status, cred = _get(live_hub, "/api/v1/bootstrap/farm-7/stable/zosnode.cred")
    assert (status, cred) == (200, "zos.farm=farm-7 zos.channel=stable "
                                   "zos.hub=http://hub.example:8080\n")
    assert _get(live_hub, "/api/v1/bootstrap/farm%20x/stable/zosnode.cred")[0] == 400


def test_dnsmasq_uki_serves_settings_and_the_signed_loader(tmp_path: Path) -> None:
    if not Path("/usr/lib/ipxe/undionly.kpxe").exists():
        pytest.skip("needs /usr/lib/ipxe (Debian package ipxe)")
    signed = tmp_path / "ipxe-signed.efi"
    signed.write_bytes(b"MZ a signed iPXE")
    out = tmp_path / "srv"
    proc = _cli("dnsmasq", "--farm", "f1", "--channel", "beta", "--hub", HUB, "--uki",
                "--efi-loader", str(signed), "-o", str(out), "--interface", "br0",
                "--network", "10.99.0.0/24")
    assert proc.returncode == 0, proc.stderr
    tftp = out / "tftp"
    assert (tftp / "ipxe.efi").read_bytes() == b"MZ a signed iPXE"
    assert (tftp / "zosnode.cred").read_text() == \
        f"zos.farm=f1 zos.channel=beta zos.hub={HUB}\n"
    assert "chain --name .zosnode.efi" in (tftp / "boot.ipxe").read_text()
    settings_file = tmp_path / "zosnode.cred"
    assert _cli("settings", "--farm", "f1", "--channel", "beta", "--hub", HUB,
                "-o", str(settings_file)).returncode == 0
    assert settings_file.read_text() == (tftp / "zosnode.cred").read_text()
