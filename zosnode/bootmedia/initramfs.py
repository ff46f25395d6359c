"""Assemble the node's initramfs: runtime, kernel modules, device nodes, /init.

The zipapp becomes `/init`; the kernel runs it through its shebang with the
interpreter collected here. There is no shell, no busybox and no other
interpreter: the build refuses to write one, and `forbidden_members` is what
the tests and `zosnode initramfs list` (exit 1 if one is found) check with.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import tempfile
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from zosnode.artifact.record import NATIVE_PREFIX, ArtifactError, Record
from zosnode.bootmedia import closure, compression, debs, kmod, profile
from zosnode.bootmedia.cpio import Entry, Kind, Tree, encode
from zosnode.bootmedia.errors import BuildInputError
from zosnode.bootmedia.ipxe import NATIVE_DIR
from zosnode.bootmedia.runtime import LIB_DIRS, LOADER, PROGRAMS, PYTHON, STDLIB, collect

INTERPRETER = "/" + PYTHON
STDLIB_DIR = STDLIB + "/"
# Directories PID 1 mounts on, plus /run (the initramfs rootfs is itself
# writable; the natives are laid out under NATIVE_DIR, not /run, which PID 1
# mounts a tmpfs on).
DIRS = ("dev", "proc", "sys", "run", "tmp", "mnt", "etc", "var", "root")
MODULES_TO_LOAD = "etc/zosnode/modules"  # kmod.render_load_list: a path a line, in load order
DEVICES = (  # name, major, minor, permissions
    ("dev/console", 5, 1, 0o600),
    ("dev/null", 1, 3, 0o666),
    ("dev/random", 1, 8, 0o666),
    ("dev/urandom", 1, 9, 0o666),
    ("dev/kmsg", 1, 11, 0o644),
)
# Anything that could give an interactive or scripted way in.
_FORBIDDEN = re.compile(
    r"(^|/)(sh|ash|bash|dash|zsh|ksh|mksh|csh|tcsh|fish|busybox|toybox|perl[0-9.]*|"
    r"python[0-9.]*-config|pip[0-9.]*|ensurepip|apt|apt-get|dpkg|lua[0-9.]*|tclsh[0-9.]*|"
    r"ruby[0-9.]*|node|nodejs|php[0-9.]*|awk|gawk|mawk|sed|login|getty|agetty|sshd|"
    r"telnetd|su|sudo)$")


@dataclass(frozen=True)
class Inputs:
    lock: Path
    modules_list: Path
    zipapp: Path
    cache: Path
    compression: str = compression.DEFAULT
    mtime: int = 0


@dataclass(frozen=True)
class Result:
    image: bytes  # compressed cpio
    kernel: bytes  # vmlinuz
    kernel_version: str
    unpacked_size: int
    members: int
    modules: tuple[str, ...]
    libraries: tuple[str, ...]
    node_profile: dict[str, object]  # profile.describe: the artifact, each /init file's sha256

    def info(self, compression_name: str) -> dict[str, object]:
        return {
            "compression": compression_name,
            "initramfs_sha256": hashlib.sha256(self.image).hexdigest(),
            "initramfs_size": len(self.image),
            "unpacked_size": self.unpacked_size,
            "members": self.members,
            "kernel_version": self.kernel_version,
            "kernel_sha256": hashlib.sha256(self.kernel).hexdigest(),
            "kernel_size": len(self.kernel),
            "modules": list(self.modules),
            "libraries": list(self.libraries),
            "node_profile": self.node_profile,
        }


PARTS = ("interpreter", "programs", "stdlib", "libraries", "artifact", "natives", "modules",
         "other")
NATIVES_DIR = NATIVE_DIR.lstrip("/") + "/"


def part_of(path: str) -> str:
    """Which part of the initramfs a member belongs to (for `initramfs list`)."""
    if path == PYTHON:
        return "interpreter"
    if path in PROGRAMS:
        return "programs"
    if path.startswith(STDLIB_DIR):
        return "stdlib"
    if path.startswith("lib/modules/"):
        return "modules"
    if path == "init":
        return "artifact"
    if path.startswith(NATIVES_DIR):
        return "natives"
    if path.startswith(("lib/", "lib64/", "usr/lib/")):
        return "libraries"
    return "other"


def part_sizes(entries: Iterable[Entry]) -> dict[str, tuple[int, int, int]]:
    """Per part: members, bytes, and bytes once deflated (each member alone, level 6)."""
    sizes = {p: [0, 0, 0] for p in PARTS}
    for e in entries:
        s = sizes[part_of(e.path)]
        s[0] += 1
        s[1] += len(e.data)
        s[2] += len(zlib.compress(e.data, 6)) if e.data else 0
    return {p: (s[0], s[1], s[2]) for p, s in sizes.items()}


def stream_order(entry: Entry) -> tuple[int, str]:
    """The image's member order: directories first (by path, so a parent
    before its children), then ELF programs and libraries, `/init`, the
    stdlib's bytecode, kernel modules, the rest; by path within each. Like
    beside like in the one compression stream: 49 KB smaller than by path
    alone at zstd -19 (bench/boot.md). The laid-out natives follow `/init`,
    whose stored zip holds the same bytes near its start: within zstd's
    window, the second copy costs next to nothing."""
    if entry.kind is Kind.DIR:
        return (0, entry.path)
    if entry.path.startswith(NATIVES_DIR):
        return (2, entry.path)
    if entry.path.startswith("lib/modules/"):
        return (4, entry.path)
    if entry.data[:4] == b"\x7fELF":
        return (1, entry.path)
    if entry.path == "init":
        return (2, entry.path)
    if entry.path.endswith(".pyc"):
        return (3, entry.path)
    return (5, entry.path)


def forbidden_members(paths: Iterable[str]) -> list[str]:
    """Members that are a shell, a package manager or another interpreter."""
    return sorted(p for p in paths if _FORBIDDEN.search(p))


def check_zipapp(data: bytes) -> list[bytes]:
    """The artifact's native extension files; refuses one with the wrong shebang."""
    first = data.split(b"\n", 1)[0]
    if first != f"#!{INTERPRETER}".encode():
        raise BuildInputError(
            f"the zipapp's first line is {first[:60]!r}; the initramfs runs {INTERPRETER}: "
            f"build it with build_zipapp.py --python {INTERPRETER}")
    try:
        with zipfile.ZipFile(BytesIO(data)) as zf:
            return [zf.read(n) for n in sorted(zf.namelist())
                    if n.endswith(".so") or ".so." in posixpath.basename(n)]
    except zipfile.BadZipFile as exc:
        raise BuildInputError(f"the zipapp is not a zip archive: {exc}") from exc


def _kernel_parts(root: Path) -> tuple[str, bytes, Path]:
    mods = sorted((root / "lib" / "modules").iterdir()) if (root / "lib/modules").is_dir() else []
    if len(mods) != 1:
        raise BuildInputError("the kernel package must hold exactly one /lib/modules/<version>")
    version = mods[0].name
    vmlinuz = root / "boot" / f"vmlinuz-{version}"
    if not vmlinuz.is_file():
        raise BuildInputError(f"the kernel package has no boot/vmlinuz-{version}")
    return version, vmlinuz.read_bytes(), mods[0]


def _add_modules(tree: Tree, moddir: Path, version: str,
                 wanted: tuple[str, ...]) -> tuple[str, ...]:
    available: dict[str, kmod.Module] = {}
    for path in sorted(moddir.rglob("*.ko")):
        rel = path.relative_to(moddir).as_posix()
        mod = kmod.read_module(rel, path.read_bytes())
        available[mod.name] = mod
    builtin_file = moddir / "modules.builtin"
    builtin = frozenset(
        kmod.module_name(line) for line in
        (builtin_file.read_text().split() if builtin_file.exists() else ()))
    chosen = kmod.resolve(wanted, available, builtin)
    base = f"lib/modules/{version}"
    for mod in chosen:
        tree.add(Entry(f"{base}/{mod.path}", Kind.FILE, 0o644,
                       data=(moddir / mod.path).read_bytes()))
    tree.add(Entry(f"{base}/modules.dep", Kind.FILE, 0o644, data=kmod.render_dep(chosen).encode()))
    tree.add(Entry(f"{base}/modules.alias", Kind.FILE, 0o644,
                   data=kmod.render_alias(chosen).encode()))
    # What PID 1 loads at boot, resolved here: it reads neither modules.dep nor modules.alias.
    tree.add(Entry(MODULES_TO_LOAD, Kind.FILE, 0o644,
                   data=kmod.render_load_list(chosen, wanted).encode()))
    return tuple(m.name for m in chosen)


def laid_out_natives(init: bytes) -> dict[str, Entry]:
    """The natives of `/init` as the image lays them out, read-only, where the
    artifact's start-up looks first (`NATIVE_DIR/<build id>`, as
    zosnode.artifact.unpack names it): the node checks them against the build
    record at start-up but never unpacks them. Each is checked against the
    record here too; a profile holds only the natives a node loads."""
    with zipfile.ZipFile(BytesIO(init)) as zf:
        try:
            record = Record.from_json(zf.read(profile.RECORD_NAME))
        except (KeyError, ArtifactError) as exc:
            raise BuildInputError(f"/init's build record: {exc}") from exc
        held = set(zf.namelist())
        top = f"{NATIVES_DIR}{record.build_id[:32]}/"
        out = {}
        for rel, digest in sorted(record.native_files.items()):
            if NATIVE_PREFIX + rel not in held:
                continue
            data = zf.read(NATIVE_PREFIX + rel)
            if hashlib.sha256(data).hexdigest() != digest:
                raise BuildInputError(f"/init's {NATIVE_PREFIX}{rel} does not match "
                                      "its build record")
            out[top + rel] = Entry(top + rel, Kind.FILE, 0o555 if rel.endswith(".so") else 0o444,
                                   data=data)
    return out


def build(inputs: Inputs) -> Result:
    for path, what in ((inputs.lock, "package lock"), (inputs.modules_list, "module list"),
                       (inputs.zipapp, "zipapp")):
        if not path.is_file():
            raise BuildInputError(f"{path}: {what} not found")
    if inputs.compression not in compression.METHODS:
        raise BuildInputError(f"compression {inputs.compression!r} is not one of "
                              f"{', '.join(compression.METHODS)}")
    pins = debs.parse_lock(inputs.lock.read_text(), str(inputs.lock))
    wanted = kmod.parse_list(inputs.modules_list.read_text())
    zipapp = inputs.zipapp.read_bytes()
    check_zipapp(zipapp)
    debs_dir = inputs.cache / "initramfs-debs"
    files = {pin: debs.fetch(pin, debs_dir) for pin in pins}

    tree = Tree()
    with tempfile.TemporaryDirectory(prefix="zosnode-initramfs-") as tmp:
        runtime_root = Path(tmp) / "runtime"
        kernel_root = Path(tmp) / "kernel"
        for pin, deb in files.items():
            debs.extract(deb, kernel_root if pin.role == "kernel" else runtime_root)
        with zipfile.ZipFile(BytesIO(zipapp)) as zf:
            members = zf.namelist()
        if profile.RECORD_NAME in members:  # else not ours (a benchmark's floor): all of it
            loaded = profile.probe(zipapp, runtime_root, PYTHON, LOADER, LIB_DIRS)
            members = profile.select(members, loaded, profile.distributions(zipapp))
        node_init = profile.write(zipapp, members)
        natives = check_zipapp(node_init)
        report = collect(runtime_root, tree, natives,
                         closure.artifact_roots(zipapp, frozenset(members)), node_init)
        version, kernel, moddir = _kernel_parts(kernel_root)
        modules = _add_modules(tree, moddir, version, wanted)
    for d in DIRS:
        tree.mkdir(d, 0o1777 if d == "tmp" else 0o755)
    tree.mkdir(NATIVE_DIR.lstrip("/"), 0o700)
    for name, major, minor, perm in DEVICES:
        tree.add(Entry(name, Kind.CHAR, perm, rdev=(major, minor)))
    tree.add(Entry("init", Kind.FILE, 0o755, data=node_init))
    if profile.RECORD_NAME in members:
        for entry in laid_out_natives(node_init).values():
            tree.add(entry)
    tree.add(Entry("etc/zosnode-initramfs.json", Kind.FILE, 0o644, data=json.dumps(
        {"packages": {p.name: p.version for p in pins}, "kernel": version,
         "init_sha256": hashlib.sha256(node_init).hexdigest(),
         "artifact_sha256": hashlib.sha256(zipapp).hexdigest()},
        sort_keys=True, indent=1).encode() + b"\n"))
    entries = tree.entries()
    bad = forbidden_members(e.path for e in entries)
    if bad:
        raise BuildInputError(f"the initramfs would contain {bad[0]}: refusing")
    raw = encode(entries, inputs.mtime, key=stream_order)
    return Result(image=compression.compress(raw, inputs.compression), kernel=kernel,
                  kernel_version=version, unpacked_size=len(raw), members=len(entries),
                  modules=modules, libraries=report.libraries,
                  node_profile=profile.describe(zipapp, node_init))
