"""The initramfs: contents, no shell, reproducible bytes, refused inputs."""

from __future__ import annotations

import hashlib
import io
import json
import marshal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.boot.conftest import TOP, BootFiles, build_initramfs, require_debian_tools
from zosnode.agent.pid1 import modules_to_load
from zosnode.artifact.record import NATIVE_PREFIX, RECORD_NAME, Record
from zosnode.artifact.unpack import ensure_native, image_natives
from zosnode.bootmedia import closure, compression, cpio, profile
from zosnode.bootmedia.compression import decompress
from zosnode.bootmedia.cpio import Kind
from zosnode.bootmedia.debs import parse_lock
from zosnode.bootmedia.errors import BuildInputError
from zosnode.bootmedia.initramfs import NATIVES_DIR, forbidden_members
from zosnode.bootmedia.kmod import module_name


def _entries(boot_files: BootFiles) -> dict[str, cpio.Entry]:
    return {e.path: e for e in cpio.decode(decompress(boot_files.initramfs.read_bytes()))}


def test_contents(boot_files: BootFiles) -> None:
    entries = _entries(boot_files)
    init = entries["init"]
    assert init.kind is Kind.FILE and init.perm == 0o755
    # /init is the artifact's node profile: a subset of its files, each the
    # artifact's bytes, each listed in initramfs.json (profile.py).
    artifact = boot_files.zipapp.read_bytes()
    assert init.data != artifact and profile.check(init.data, artifact) == []
    assert init.data.startswith(b"#!/usr/bin/python3.11\n")
    info = json.loads((boot_files.out / "initramfs.json").read_text())["node_profile"]
    with zipfile.ZipFile(io.BytesIO(init.data)) as zf:
        held = {n: hashlib.sha256(zf.read(n)).hexdigest() for n in zf.namelist()}
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
    assert held == info["files"]
    assert info["artifact_sha256"] == hashlib.sha256(artifact).hexdigest()
    # The node's paths are in it; the builder's and hub's are not.
    for kept in ("zosnode/agent/boot/__init__.pyc", "zosnode/mount/child.pyc",
                 "zosnode/artifact/unpack.pyc", "zosnode/_artifact.json", "__main__.pyc",
                 "zosnode/net/nlwire.pyc", "zosnode/net/firewall.pyc"):
        assert kept in held, kept
    assert any(n.startswith("_native/pyfuse3/") for n in held)
    # Nor pyroute2 (the node speaks netlink itself: zosnode/net/netlink.py), nor
    # what only it imported (multiprocessing, unittest's mock, sqlite3).
    for dropped in ("zosnode/hub/", "zosnode/bootmedia/", "zosnode/cli/hub_cmd",
                    "_native/pyfastcdc/", "pyroute2/"):
        assert not [n for n in held if n.startswith(dropped)], dropped
    lib = "usr/lib/python3.11/"
    for dropped in ("sqlite3", "multiprocessing/", "unittest/"):
        assert not [p for p in entries if p.startswith(lib + dropped)], dropped
    # Nor cffi's compiler (cffi, pycparser): only trio's fallback for an os
    # without waitid imports it, and this interpreter has waitid. The backend
    # PyNaCl's compiled module imports stays.
    for dropped in ("_native/cffi/", "pycparser/"):
        assert not [n for n in held if n.startswith(dropped)], dropped
    # Nor what only another platform or Python imports (profile._FOLLOW's
    # decided branches): the node's epoll, waitid and Linux backends stay.
    for kept in ("trio/_core/_io_epoll.pyc", "trio/_core/_generated_io_epoll.pyc",
                 "trio/_subprocess_platform/waitid.pyc"):
        assert kept in held, kept
    # sysconfig's data module goes only with sysconfig (closure.IMPORTED_BY).
    assert f"{lib}sysconfig.pyc" in entries or not [
        p for p in entries if p.startswith(f"{lib}_sysconfigdata")]
    for dropped in ("typing_extensions.pyc", "trio/_core/_generated_io_windows",
                    "trio/_core/_generated_io_kqueue", "trio/_subprocess_platform/kqueue"):
        assert not [n for n in held if n.startswith(dropped)], dropped
    assert any(n.startswith("_native/_cffi_backend.") for n in held)
    # Nor backports.zstd's tarfile and zipfile (profile.NOT_FOLLOWED).
    assert "_native/backports/zstd/_zstdfile.pyc" in held  # sourceless
    assert not [n for n in held
                if n.startswith("_native/") and (n.endswith(".py") or "__pycache__" in n)]
    assert not [n for n in held if "/zstd/tarfile" in n or "/zstd/zipfile" in n]
    assert not [n for n in held if n.startswith("trio/testing/")]  # its hypothesis hook's
    assert "trio/_core/_run.pyc" in held
    # Bytecode without docstrings (pyc.py), ours and the standard library's.
    # A module with a docstring stores __doc__ at its top level.
    with zipfile.ZipFile(io.BytesIO(init.data)) as zf:
        ours = zf.read("zosnode/entry.pyc")
    for pyc in (ours, entries["usr/lib/python3.11/os.pyc"].data):
        assert "__doc__" not in marshal.loads(pyc[16:]).co_names
    assert not [n for n in held if n.endswith(".py") and not n.startswith("_native/")]
    assert entries["usr/bin/python3.11"].kind is Kind.FILE
    assert entries["lib64/ld-linux-x86-64.so.2"].kind is Kind.SYMLINK
    assert entries["dev/console"].rdev == (5, 1) and entries["dev/urandom"].rdev == (1, 9)
    assert entries["run"].kind is Kind.DIR and entries["tmp"].perm == 0o1777
    # Sourceless bytecode only: no .py in the standard library.
    stdlib = [p for p in entries if p.startswith("usr/lib/python3.11/")]
    assert "usr/lib/python3.11/os.pyc" in entries
    assert not [p for p in stdlib if p.endswith(".py")]
    assert not [p for p in stdlib if "/test/" in p or "/ensurepip/" in p or "/idlelib/" in p]
    # Only what the artifact loads (closure.py): what its imports reach, the
    # codecs looked up by name, and what pyfuse3's import-time metadata read
    # needs; not modules nothing imports.
    for kept in ("encodings/idna.pyc", "email/parser.pyc", "ssl.pyc", "_strptime.pyc"):
        assert f"usr/lib/python3.11/{kept}" in entries, kept
    for dropped in ("xml/dom/minidom.pyc", "zoneinfo/__init__.pyc", "mimetypes.pyc"):
        assert f"usr/lib/python3.11/{dropped}" not in entries, dropped
    assert not [p for p in stdlib if "/_codecs_jp." in p or "/_multibytecodec." in p]
    # Nor what the interpreter has frozen in (but os, the landmark it finds
    # the standard library by), codecs no node path names, or what a word in
    # a native's message named (statistics, and decimal with it).
    for dropped in ("site.pyc", "codecs.pyc", "importlib/_bootstrap_external.pyc",
                    "encodings/cp1252.pyc", "encodings/shift_jis.pyc", "statistics.pyc",
                    "decimal.pyc", "sysconfig.pyc"):
        assert f"usr/lib/python3.11/{dropped}" not in entries, dropped
    assert "usr/lib/python3.11/encodings/cp437.pyc" in entries  # zipfile's names
    # Metadata: a held distribution's, without RECORD; none for one not held.
    assert [n for n in held if n.startswith("_native/pyfuse3-") and n.endswith("/METADATA")]
    assert not [n for n in held if n.endswith(".dist-info/RECORD")]
    assert not [n for n in held if n.startswith(("pycparser-", "_native/pyfastcdc-"))]
    mods = [p for p in entries if p.startswith("lib/modules/")]
    dep = next(entries[p].data.decode() for p in mods if p.endswith("/modules.dep"))
    for needed in ("virtio_net.ko:", "fuse.ko:", "nf_tables.ko:", "nft_ct.ko:"):
        assert needed in dep
    # Every module modules.dep names is in the archive.
    base = next(p for p in mods if p.endswith("/modules.dep")).rsplit("/", 1)[0]
    for line in dep.splitlines():
        for path in line.replace(":", "").split():
            assert f"{base}/{path}" in entries
    # Every member is owned by root with the fixed time: checked on the raw header.
    raw = decompress(boot_files.initramfs.read_bytes())
    assert raw.count(b"070701") >= len(entries)


def test_no_shell_busybox_or_other_interpreter(boot_files: BootFiles) -> None:
    entries = _entries(boot_files)
    assert forbidden_members(entries) == []
    executables = sorted(p for p, e in entries.items() if e.kind is Kind.FILE
                         and e.perm & 0o111 and not p.endswith(".so")
                         and ".so." not in p and "/lib-dynload/" not in p)
    assert executables == ["init", "sbin/mke2fs", "usr/bin/python3.11"]
    proc = subprocess.run([sys.executable, "-m", "zosnode", "initramfs", "list",
                           str(boot_files.initramfs)], capture_output=True, text=True,
                          timeout=120, cwd=TOP)
    assert proc.returncode == 0, proc.stderr
    assert " init\n" in proc.stdout
    parts = dict(ln.split(None, 1) for ln in proc.stdout.splitlines()[-8:])
    assert list(parts) == ["interpreter", "programs", "stdlib", "libraries", "artifact",
                           "natives", "modules", "other"]
    assert int(parts["programs"].split()[0]) == 1  # mke2fs, for zos.cache.format=
    init = _entries(boot_files)["init"].data
    assert int(parts["artifact"].split()[1]) == len(init)
    # An auditor checks /init against the audited artifact, and a different one fails.
    check = [sys.executable, "-m", "zosnode", "initramfs", "list", str(boot_files.initramfs),
             "--artifact"]
    proc = subprocess.run([*check, str(boot_files.zipapp)], capture_output=True, text=True,
                          timeout=120, cwd=TOP)
    assert proc.returncode == 0 and "node profile of" in proc.stdout, proc.stderr
    with zipfile.ZipFile(boot_files.zipapp) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members["zosnode/agent/boot/__init__.pyc"] = b"not the audited bytes"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    other = boot_files.out / "other.pyz"
    other.write_bytes(b"#!/usr/bin/python3.11\n" + buf.getvalue())
    proc = subprocess.run([*check, str(other)], capture_output=True, text=True, timeout=120,
                          cwd=TOP)
    assert proc.returncode == 1, proc.stderr
    assert "zosnode/agent/boot/__init__.pyc differs" in proc.stderr, proc.stderr


def test_the_module_list_is_resolved_and_names_the_pci_devices_each_serves(
        boot_files: BootFiles) -> None:
    entries = _entries(boot_files)
    base = next(p for p in entries if p.startswith("lib/modules/") and p.count("/") == 2)
    listing = entries["etc/zosnode/modules"].data.decode()
    lines = {ln.split()[0]: ln.split()[1:] for ln in listing.splitlines()}
    deps = {path: rest.split() for path, _, rest in
            (ln.partition(":") for ln in entries[f"{base}/modules.dep"].data.decode().splitlines())}
    order = list(lines)
    assert set(order) == set(deps)  # every module the image has, each once
    for path in order:
        assert f"{base}/{path}" in entries
        assert all(order.index(d) < order.index(path) for d in deps[path]), path
    by_name = {module_name(p): p for p in order}
    mlx5 = lines[by_name["mlx5_core"]]
    assert mlx5 and all(a.startswith("pci:") for a in mlx5)
    assert lines[by_name["mlx4_en"]] == lines[by_name["mlx4_core"]]  # through its dependency
    assert lines[by_name["hv_netvsc"]] == lines[by_name["hv_vmbus"]] == [
        "acpi*:VMBUS:*", "acpi*:VMBus:*"]  # the Hyper-V bus, an ACPI device
    for always in ("virtio_ring", "virtio", "fuse", "nf_tables"):
        assert lines[by_name[always]] == [], always
    assert lines[by_name["virtio_net"]] == ["virtio:d00000001v*"]  # after virtio_pci
    assert lines[by_name["xen_netfront"]] == ["/sys/hypervisor/type"]
    assert lines[by_name["efivarfs"]] == ["/sys/firmware/efi"]
    # On QEMU's PCI devices (host bridge, ISA bridge, VGA, virtio NIC and disk), BIOS firmware:
    qemu = ["pci:v00008086d00001237sv00001AF4sd00001100bc06sc00i00",
            "pci:v00008086d00007000sv00001AF4sd00001100bc06sc01i00",
            "pci:v00001234d00001111sv00001AF4sd00001100bc03sc00i00",
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
            "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00",
            "acpi:LNXSYSTM:", "acpi:PNP0A03:", "acpi:PNP0303:", "acpi:QEMU0002:",
            "virtio:d00000001v00001AF4", "virtio:d00000002v00001AF4"]

    def split(devices: list[str]) -> tuple[set[str], set[str]]:
        got = list(modules_to_load(listing, lambda: devices, lambda path: False))
        return ({module_name(p) for p, yes in got if yes},
                {module_name(p) for p, yes in got if not yes})

    load, out = split(qemu)
    assert out == {"ena", "gve", "mana", "ixgbevf", "vmxnet3", "mlx4_core", "mlx4_en",
                   "mlx5_core", "mlxfw", "pci_hyperv_intf", "hv_vmbus", "hv_netvsc",
                   "scsi_common", "scsi_mod", "virtio_scsi", "sd_mod", "virtio_rng",
                   "xen_netfront", "efivarfs"}, out
    assert {"virtio_pci", "virtio_net", "virtio_blk", "fuse", "nf_tables"} <= load
    # On Hyper-V (its VMBus an ACPI device), the bus and its NIC driver load.
    load, _ = split([*qemu, "acpi:MSFT1000:VMBus:"])
    assert {"hv_vmbus", "hv_netvsc"} <= load


def _natives(entries: dict[str, cpio.Entry]) -> dict[str, cpio.Entry]:
    return {p: e for p, e in entries.items()
            if p.startswith(NATIVES_DIR) and e.kind is not Kind.DIR}


def test_natives_are_laid_out_read_only_as_the_record_names_them(
        boot_files: BootFiles) -> None:
    entries = _entries(boot_files)
    init = entries["init"].data
    with zipfile.ZipFile(io.BytesIO(init)) as zf:
        record = Record.from_json(zf.read(RECORD_NAME))
        held = {n[len(NATIVE_PREFIX):]: zf.read(n) for n in zf.namelist()
                if n.startswith(NATIVE_PREFIX)}
    top = f"{NATIVES_DIR}{record.build_id[:32]}/"
    laid = _natives(entries)
    assert held and sorted(laid) == sorted(top + rel for rel in held)
    for rel, data in held.items():
        e = laid[top + rel]
        assert e.data == data and hashlib.sha256(data).hexdigest() == record.native_files[rel]
        assert e.perm == (0o555 if rel.endswith(".so") else 0o444)
    assert entries[NATIVES_DIR.rstrip("/")].perm == 0o700


def test_start_up_uses_the_laid_out_natives_without_writing(boot_files: BootFiles,
                                                            tmp_path: Path) -> None:
    entries = _entries(boot_files)
    init = tmp_path / "init"
    init.write_bytes(entries["init"].data)
    base = tmp_path / "lib-zosnode"
    for path, e in _natives(entries).items():
        target = base / path[len(NATIVES_DIR):]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(e.data)
        target.chmod(e.perm)
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in base.rglob("*")}
    found, _ = ensure_native(init, base)
    assert found.parent == base and found.is_dir()
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in base.rglob("*")} == before
    # A laid-out native that is not the record's is refused at start-up and rebuilt.
    victim = next(p for p in found.rglob("*.so"))
    victim.chmod(0o644)
    victim.write_bytes(b"not the recorded bytes")
    again, _ = ensure_native(init, base)
    assert again == found and victim.read_bytes() != b"not the recorded bytes"


def test_pid1_takes_the_images_tree_by_its_names(boot_files: BootFiles, tmp_path: Path) -> None:
    """PID 1 (`activate` as PID 1) uses the image's tree unhashed when it holds only recorded
    files: the builder checked it and only the kernel has written it yet; any other start
    hashes it (ensure_native, above)."""
    entries = _entries(boot_files)
    init = tmp_path / "init"
    init.write_bytes(entries["init"].data)
    base = tmp_path / "lib-zosnode"
    assert image_natives(init, base) is None  # no tree: the checked path builds one
    for path, e in _natives(entries).items():
        target = base / path[len(NATIVES_DIR):]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(e.data)
    tree = image_natives(init, base)
    assert tree is not None and tree.parent == base
    assert ensure_native(init, base)[0] == tree  # the same tree passes the hashed check
    victim = next(tree.rglob("*.so"))
    victim.write_bytes(b"changed")  # unhashed: taken as the image holds it
    assert image_natives(init, base) == tree
    (tree / "planted.so").write_bytes(b"")  # a file the record does not name: refused
    assert image_natives(init, base) is None
    (tree / "planted.so").unlink()
    (tree / "link").symlink_to(victim)
    assert image_natives(init, base) is None


def test_list_refuses_an_image_whose_laid_out_natives_are_not_inits(
        boot_files: BootFiles, tmp_path: Path) -> None:
    entries = list(cpio.decode(decompress(boot_files.initramfs.read_bytes())))
    victim = next(i for i, e in enumerate(entries)
                  if e.path.startswith(NATIVES_DIR) and e.path.endswith(".so"))
    old = entries[victim]
    flipped = old.data[:-1] + bytes([old.data[-1] ^ 1])
    entries[victim] = cpio.Entry(old.path, old.kind, old.perm, data=flipped)
    image = tmp_path / "tampered.img"
    image.write_bytes(compression.compress(cpio.encode(entries), "gzip"))
    proc = _cli("initramfs", "list", str(image), "--artifact", str(boot_files.zipapp))
    assert proc.returncode == 1, proc.stderr
    assert f"laid-out native {old.path} is not /init's" in proc.stderr, proc.stderr
    missing = tmp_path / "missing.img"
    missing.write_bytes(compression.compress(cpio.encode(
        [e for i, e in enumerate(entries) if i != victim]), "gzip"))
    proc = _cli("initramfs", "list", str(missing), "--artifact", str(boot_files.zipapp))
    assert proc.returncode == 1 and f"laid-out native {old.path} is missing" in proc.stderr


def test_forbidden_detector_catches_a_shell() -> None:
    assert forbidden_members(["bin/sh", "usr/bin/busybox", "usr/bin/perl5.36",
                              "usr/lib/python3.11/os.pyc", "usr/bin/dash"]) == [
        "bin/sh", "usr/bin/busybox", "usr/bin/dash", "usr/bin/perl5.36"]


@pytest.mark.slow
def test_two_builds_give_identical_bytes(boot_files: BootFiles, tmp_path: Path) -> None:
    proc = build_initramfs(boot_files.zipapp, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "initramfs.img").read_bytes() == boot_files.initramfs.read_bytes()
    assert (tmp_path / "vmlinuz").read_bytes() == boot_files.kernel.read_bytes()
    assert (tmp_path / "initramfs.json").read_bytes() == (
        boot_files.out / "initramfs.json").read_bytes()
    # The default (zstd): the same cpio inside, and the same bytes when compressed again.
    default = tmp_path / "default"
    proc = subprocess.run(
        [sys.executable, "-m", "zosnode", "initramfs", "build", "--zipapp",
         str(boot_files.zipapp), "-o", str(default), "--cache", str(TOP / "work/cache")],
        capture_output=True, text=True, timeout=900, cwd=TOP)
    assert proc.returncode == 0, proc.stderr
    image = (default / "initramfs.img").read_bytes()
    assert image[:4] == b"\x28\xb5\x2f\xfd"
    raw = decompress(image)
    assert raw == decompress(boot_files.initramfs.read_bytes())
    assert compression.compress(raw, "zstd") == image


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zosnode", *argv], capture_output=True,
                          text=True, timeout=300, cwd=TOP)


def _fake_zipapp(path: Path, shebang: bytes) -> Path:
    with zipfile.ZipFile(path.with_suffix(".zip"), "w") as zf:
        zf.writestr("__main__.py", "print('hi')\n")
    path.write_bytes(shebang + path.with_suffix(".zip").read_bytes())
    return path


def test_zipapp_for_another_interpreter_is_refused(tmp_path: Path) -> None:
    app = _fake_zipapp(tmp_path / "app.pyz", b"#!/usr/bin/python3\n")
    proc = _cli("initramfs", "build", "--zipapp", str(app), "-o", str(tmp_path / "o"),
                "--lock", str(TOP / "initramfs/packages.lock"),
                "--modules", str(TOP / "initramfs/modules.list"), "--cache", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--python /usr/bin/python3.11" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_deb_with_wrong_hash_is_refused(tmp_path: Path) -> None:
    require_debian_tools()
    pins = parse_lock((TOP / "initramfs/packages.lock").read_text())
    cache = tmp_path / "cache"
    (cache / "initramfs-debs").mkdir(parents=True)
    # A tampered copy of the first pinned package, where apt would have put it.
    (cache / "initramfs-debs" / pins[0].deb_name).write_bytes(b"!<arch>\nnot the real one")
    app = _fake_zipapp(tmp_path / "app.pyz", b"#!/usr/bin/python3.11\n")
    proc = _cli("initramfs", "build", "--zipapp", str(app), "-o", str(tmp_path / "o"),
                "--lock", str(TOP / "initramfs/packages.lock"),
                "--modules", str(TOP / "initramfs/modules.list"), "--cache", str(cache))
    assert proc.returncode == 2, proc.stderr
    assert "differs from the pinned" in proc.stderr and proc.stderr.count("\n") == 1
    assert not (tmp_path / "o").exists()


_H = "0" * 64


@pytest.mark.parametrize("text, match", [
    (f"runtime libc6 2.36 abc\nkernel kk 1 {_H}", "64 lowercase hex"),
    ("runtime libc6 2.36\n", "expected"),
    (f"runtime aa 1 {_H}\n", "exactly one package must have the role kernel"),
    (f"weird aa 1 {_H}\nkernel kk 1 {_H}", "role must be"),
    (f"runtime aa 1 {_H}\nruntime aa 1 {_H}\nkernel kk 1 {_H}", "pinned twice"),
    (f"runtime A; 1 {_H}\nkernel kk 1 {_H}", "not a Debian package name"),
])
def test_lock_parsing(text: str, match: str) -> None:
    with pytest.raises(BuildInputError, match=match):
        parse_lock(text)


def test_missing_inputs_are_one_line_errors(tmp_path: Path) -> None:
    proc = _cli("initramfs", "build", "--zipapp", str(tmp_path / "nope.pyz"),
                "-o", str(tmp_path / "o"))
    assert proc.returncode == 2 and "not found" in proc.stderr
    assert proc.stderr.count("\n") == 1
    proc = _cli("initramfs", "list", str(tmp_path / "nope.img"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    (tmp_path / "junk.img").write_bytes(b"070701" + b"z" * 200)
    proc = _cli("initramfs", "list", str(tmp_path / "junk.img"))
    assert proc.returncode == 2 and "not an initramfs" in proc.stderr


@pytest.mark.skipif(not Path("/usr/bin/python3.11").exists(),
                    reason="needs the Debian python3.11 at /usr/bin (the runtime the image pins)")
def test_a_module_imported_by_a_computed_name_goes_only_with_its_importer() -> None:
    index = closure.stdlib_index(Path("/usr/lib/python3.11"))
    args = (Path("/"), "usr/bin/python3.11", "lib64/ld-linux-x86-64.so.2",
            ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"), index)
    data = set(closure.IMPORTED_BY) & set(index)
    assert data  # Debian's names for sysconfig's platform data
    assert not data & closure.traced({"json"}, *args)
    assert data <= closure.traced({"sysconfig"}, *args)
