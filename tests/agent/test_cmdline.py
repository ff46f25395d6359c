"""Kernel command line: every key, repeats, junk, and attempts to pass a trust root."""

from __future__ import annotations

import pytest

from zosnode.agent.cmdline import DEFAULTS, MAX_HUBS, Config, parse, tokens


def test_every_key() -> None:
    p = parse("BOOT_IMAGE=/vmlinuz console=ttyS0 quiet zos.hub=http://10.0.0.1:8080 "
              "zos.hub=https://hub.example.org/ zos.farm=farm-7 zos.channel=beta "
              "zos.net=enp1s0 zos.debug")
    assert p.notes == ()
    c = p.config
    assert c.hubs == ("http://10.0.0.1:8080", "https://hub.example.org/")
    assert (c.farm, c.channel, c.net, c.debug) == ("farm-7", "beta", "enp1s0", True)


def test_defaults_without_our_keys() -> None:
    p = parse("console=ttyS0 root=/dev/ram0 panic=-1")
    assert p.config == DEFAULTS and p.notes == ()


def test_defaults_are_overridden_only_where_given() -> None:
    base = Config(hubs=("http://a:1",), farm="f0", channel="stable")
    assert parse("zos.channel=edge", base).config == Config(hubs=("http://a:1",), farm="f0",
                                                            channel="edge")
    assert parse("zos.hub=http://b:2", base).config.hubs == ("http://b:2",)


@pytest.mark.parametrize("value", ["0", "no", "false"])
def test_debug_off(value: str) -> None:
    assert parse(f"zos.debug={value}").config.debug is False


def test_repeated_single_keys_last_wins_and_is_reported() -> None:
    p = parse("zos.farm=a zos.farm=b zos.channel=x zos.channel=y zos.net=e0 zos.net=e1")
    assert (p.config.farm, p.config.channel, p.config.net) == ("b", "y", "e1")
    assert len(p.notes) == 3 and all("given again" in n for n in p.notes)


def test_repeated_hub_and_too_many_hubs() -> None:
    hubs = " ".join(f"zos.hub=http://10.0.0.{i}" for i in range(MAX_HUBS + 2))
    p = parse(f"zos.hub=http://10.0.0.0 {hubs}")
    assert len(p.config.hubs) == MAX_HUBS
    assert sum("given twice" in n for n in p.notes) == 1
    assert sum(f"more than {MAX_HUBS}" in n for n in p.notes) == 2


@pytest.mark.parametrize("junk", [
    "zos.hub=", "zos.hub", "zos.hub=ftp://x", "zos.hub=http://", "zos.hub=http://u:p@h/",
    "zos.hub=http://h:99999", "zos.hub=http://h/?q=1", "zos.hub=http://h/#f",
    "zos.hub=http://h:0", "zos.hub=http://[::1", "zos.farm=", "zos.farm=a/b",
    "zos.farm=" + "x" * 65, "zos.farm=-lead", "zos.channel=../../etc", "zos.net=",
    "zos.net=" + "e" * 16, "zos.net=a/b", "zos.net=..", "zos.debug=maybe", "zos.frobnicate=1",
    "zos.=1", "zos.hub=http://h\x01x/",
])
def test_junk_is_reported_and_ignored(junk: str) -> None:
    p = parse(f"zos.farm=ok {junk} zos.channel=good")
    assert len(p.notes) == 1, p.notes
    assert p.config.farm in ("ok",) and p.config.channel == "good"
    assert p.config.hubs == () and p.config.net is None and p.config.debug is False


@pytest.mark.parametrize("attempt", [
    "zos.root=AAAA", "zos.trust=http://evil/root", "zos.key=ed25519:abc", "zos.keys=1,2",
    "zos.anchor=/tmp/a.cbor", "zos.pubkey=00", "zos.floor=0", "zos.trust_root=x",
    "ZOS.ROOT=x".lower(), "zos.Root=x",
])
def test_trust_root_never_from_the_command_line(attempt: str) -> None:
    p = parse(f"zos.farm=f {attempt}")
    assert p.config == Config(farm="f")
    assert len(p.notes) == 1 and "trust root is never taken" in p.notes[0]


def test_quoting_like_the_kernel() -> None:
    assert tokens('a "b c" d="e f" g') == ["a", "b c", "d=e f", "g"]
    assert tokens('  x  ""  y ') == ["x", "", "y"]
    assert tokens('zos.farm="unterminated') == ["zos.farm=unterminated"]
    p = parse('zos.farm="my farm"')
    assert p.config.farm is None and "ignored zos.farm" in p.notes[0]


def test_overlong_command_line_is_cut_and_reported() -> None:
    p = parse("zos.farm=a " + "x" * 10_000 + " zos.channel=late")
    assert p.config.farm == "a" and p.config.channel == "stable"
    assert "longer than" in p.notes[0]


def test_long_values_are_shortened_in_notes() -> None:
    p = parse("zos.farm=" + "y" * 500)
    assert len(p.notes[0]) < 120


def test_config_refuses_bad_values_when_built() -> None:
    with pytest.raises(ValueError):
        Config(hubs=("gopher://x",))


@pytest.mark.parametrize(("text", "cache", "fmt"), [
    ("zos.cache=auto", "auto", None),
    ("zos.cache=LABEL=ZOSCACHE", "LABEL=ZOSCACHE", None),
    ("zos.cache=UUID=0A1B2C3D-0000-4000-8000-00000000000F",
     "UUID=0a1b2c3d-0000-4000-8000-00000000000f", None),
    ("zos.cache=auto zos.cache.format=/dev/vdb", "auto", "/dev/vdb"),
    ("zos.cache.format=/dev/nvme0n1", None, "/dev/nvme0n1"),
])
def test_cache_keys(text: str, cache: str | None, fmt: str | None) -> None:
    p = parse(text)
    assert p.notes == ()
    assert (p.config.cache, p.config.cache_format) == (cache, fmt)


@pytest.mark.parametrize("text", [
    "zos.cache", "zos.cache=", "zos.cache=yes", "zos.cache=LABEL=", "zos.cache=LABEL=a/b",
    "zos.cache=LABEL=" + "x" * 17, "zos.cache=UUID=xyz", "zos.cache=/dev/vdb",
    "zos.cache.format", "zos.cache.format=vdb", "zos.cache.format=/dev/../etc/passwd",
    "zos.cache.format=/dev/disk/by-id/x", "zos.cache.format=/dev/VDB",
])
def test_bad_cache_keys_are_ignored_and_reported(text: str) -> None:
    p = parse(text)
    assert (p.config.cache, p.config.cache_format) == (None, None)
    assert len(p.notes) == 1 and p.notes[0].startswith("ignored zos.cache")
