"""Kernel modules for the initramfs: read .modinfo, resolve, write what PID 1 loads.

The agent loads modules with finit_module in the order `render_load_list`
writes, leaving out the drivers of devices that are not there; it reads
no modules.dep or modules.alias (written too, as depmod would, for people).
All of it comes from the modules' own .modinfo sections, so no depmod run is
needed and the output depends only on the module files. Pure code.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from zosnode.bootmedia.elf import section
from zosnode.bootmedia.errors import BuildInputError, FormatError


def module_name(path_or_name: str) -> str:
    """The kernel's canonical name: basename, no .ko suffix, '-' read as '_'."""
    base = posixpath.basename(path_or_name)
    for suffix in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return base.replace("-", "_")


@dataclass(frozen=True)
class Module:
    name: str
    path: str  # relative to /lib/modules/<version>/, e.g. kernel/fs/fuse/fuse.ko
    depends: tuple[str, ...]
    aliases: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.path.endswith(".ko") or self.path.startswith("/"):
            raise FormatError(f"module path {self.path!r} is not a relative .ko path")


def read_module(path: str, data: bytes) -> Module:
    info = section(data, ".modinfo")
    if info is None:
        raise FormatError(f"{path}: no .modinfo section")
    depends: tuple[str, ...] = ()
    aliases: list[str] = []
    for item in info.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if not sep:
            continue
        if key == b"depends" and value:
            names = value.split(b",")
            if not all(names) or not value.isascii():
                raise FormatError(f"{path}: .modinfo depends={value!r} is not a list of names")
            depends = tuple(module_name(d.decode()) for d in names)
        elif key == b"alias":
            aliases.append(value.decode("ascii", "replace"))
    return Module(module_name(path), path, depends, tuple(aliases))


def resolve(wanted: Iterable[str], available: Mapping[str, Module],
            builtin: frozenset[str]) -> tuple[Module, ...]:
    """The wanted modules and their dependencies, each after all it depends on.

    A wanted module that is built into the kernel needs nothing; one that is
    neither built in nor available is a mistake in the module list.
    """
    order: list[Module] = []
    done: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in done or name in builtin:
            return
        if name in chain:
            raise FormatError(f"module dependency cycle: {' -> '.join(chain + (name,))}")
        mod = available.get(name)
        if mod is None:
            via = f" (needed by {chain[-1]})" if chain else ""
            raise BuildInputError(f"kernel module {name}{via} is not in this kernel")
        for dep in mod.depends:
            visit(dep, chain + (name,))
        done.add(name)
        order.append(mod)

    for name in wanted:
        visit(module_name(name), ())
    return tuple(order)


def render_dep(modules: Iterable[Module]) -> str:
    """modules.dep as depmod writes it: `path: dep-paths`, deps in load order reversed."""
    by_name = {m.name: m for m in modules}
    lines = []
    for mod in sorted(by_name.values(), key=lambda m: m.path):
        deps = _all_deps(mod, by_name)
        lines.append(f"{mod.path}:" + "".join(f" {by_name[d].path}" for d in deps))
    return "".join(line + "\n" for line in lines)


def _all_deps(mod: Module, by_name: Mapping[str, Module]) -> list[str]:
    # depmod lists every transitive dependency, the one to load last first.
    order: list[str] = []

    def visit(name: str) -> None:
        for dep in by_name[name].depends:
            if dep in by_name and dep not in order:
                visit(dep)
                order.append(dep)

    visit(mod.name)
    return list(reversed(order))


# What a line of the load list may name as what its module serves. A modalias pattern of a bus
# whose devices PID 1 has all seen by the line's turn: PCI and ACPI, enumerated before /init, and
# virtio once its transports are loaded (an earlier line that would need one always loads). Else
# a sysfs path that exists only where such devices can: /sys/hypervisor/type only in a Xen guest
# (CONFIG_XEN_SYS_HYPERVISOR, set in Debian's kernels; the xen bus itself is registered on any
# host), SCSI's bus once a host driver's module made it (its disks come later); efivarfs has
# work only with EFI firmware.
BY_DEVICE = ("pci:", "acpi", "virtio:")
BY_PRESENCE = {"xen:": "/sys/hypervisor/type", "scsi:": "/sys/bus/scsi"}
FIRMWARE = {"efivarfs": "/sys/firmware/efi"}
VIRTIO_TRANSPORTS = ("virtio_pci", "virtio_mmio")


def _served(mod: Module) -> set[str]:
    out = {a for a in mod.aliases if a.startswith(BY_DEVICE)}
    out |= {path for a in mod.aliases for bus, path in BY_PRESENCE.items() if a.startswith(bus)}
    return out | ({FIRMWARE[mod.name]} if mod.name in FIRMWARE else set())


def render_load_list(chosen: Sequence[Module], wanted: Iterable[str]) -> str:
    """What PID 1 loads (etc/zosnode/modules): a module a line in `chosen`'s order (from
    `resolve`: each after what it needs), its path, then, if every wanted module that needs it
    serves devices PID 1 can tell are absent (itself or through a dependency), what they serve
    (`_served`). The node leaves out a line none of whose devices is there: no cloud NIC's
    driver where its NIC is absent, no Hyper-V or Xen bus driver outside those, no disk
    driver without its disk, no efivarfs without EFI (pid1.modules_to_load)."""
    by_name = {m.name: m for m in chosen}
    gates: dict[str, set[str] | None] = {}  # module -> what its users serve; None: always
    for name in dict.fromkeys(module_name(w) for w in wanted):
        if name not in by_name:
            continue  # built into the kernel
        needs = [name, *_all_deps(by_name[name], by_name)]
        served = set().union(*(_served(by_name[n]) for n in needs))
        for n in needs:
            gate = gates.get(n, set())
            gates[n] = None if gate is None or not served else gate | served
    transports = [i for i, m in enumerate(chosen) if m.name in VIRTIO_TRANSPORTS]
    lines = []
    for i, mod in enumerate(chosen):
        gate = gates.get(mod.name)
        early = bool(transports) and i < transports[-1]  # before them no virtio device is seen
        if gate and early and any(a.startswith("virtio:") for a in gate):
            gate = None
        lines.append(" ".join([mod.path, *sorted(gate or ())]))
    return "".join(line + "\n" for line in lines)


def render_alias(modules: Iterable[Module]) -> str:
    lines = sorted(f"alias {a} {m.name}" for m in modules for a in m.aliases)
    return "".join(line + "\n" for line in lines)


def parse_list(text: str) -> tuple[str, ...]:
    """A module list file: one name a line, `#` comments."""
    names = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            names.append(module_name(line))
    return tuple(names)
