"""Read a YAML target description (format in ``docs/harness.md``) into a :class:`~xenqemu.target.Target`.

Hostile input is normal input here: the file is read as bytes and decoded as UTF-8, duplicate
keys are errors (the document is composed first and every mapping checked, so the error names
the full key such as ``dom0.kernel`` and both lines), and every field has a type checked before
it is used (a list where a string belongs is an error, never stringified).  Defaults are the
``QB_XEN_*`` contract's (:mod:`xenboot.contract`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import xenboot
import yaml

from .target import (
    Dom0Boot,
    Target,
    TargetError,
    check_modules_fit,
    parse_memory,
    read_target_text,
    split_args,
)

__all__ = ["DOM0_KEYS", "YAML_KEYS", "load_yaml_target"]

#: key -> what it holds (the fix of an unknown key lists them)
YAML_KEYS = {
    "name": "a label for logs",
    "qemu": "the QEMU binary (default qemu-system-aarch64)",
    "kernel": "the Xen binary, QEMU -kernel (required)",
    "xen_cmdline": "Xen's command line (QEMU -append)",
    "dom0": "mapping: kernel, bootargs, initrd, kernel_addr, initrd_addr",
    "rootfs": "dom0's root filesystem image",
    "rootfs_format": "raw or qcow2",
    "machine": "QEMU -machine value",
    "cpu": "QEMU -cpu value",
    "smp": "number of CPUs",
    "memory": "RAM size (1024, 1024M, 1G)",
    "network": "true/false: user-mode network with a virtio-net-device",
    "extra_args": "extra QEMU arguments (list of strings, or one string split like a shell)",
    "dtb": "a device tree to pass with -dtb (guest-loader needs QEMU's own, so rarely)",
}
DOM0_KEYS = ("kernel", "bootargs", "initrd", "kernel_addr", "initrd_addr")


def _kind(value: Any) -> str:
    """How a YAML value reads to a user: 'a string', 'a list', 'true/false', ..."""
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "nothing" if value is None else type(value).__name__


def _check_unique_keys(node: yaml.Node, path: Path, prefix: str, lines: dict[str, int]) -> None:
    """Record every key's line; raise on a key that appears twice in one mapping."""
    if not isinstance(node, yaml.MappingNode):
        return
    for key_node, value_node in node.value:
        key = prefix + str(key_node.value)
        line = key_node.start_mark.line + 1
        if key in lines:
            raise TargetError(path, key, f"duplicate key (first set on line {lines[key]})",
                              "keep one of the two; YAML would silently take the last", line)
        lines[key] = line
        _check_unique_keys(value_node, path, key + ".", lines)


def _parse(path: Path, text: str) -> tuple[Any, dict[str, int]]:
    """The document's data and the line of every key (``dom0.kernel`` style)."""
    loader = yaml.SafeLoader(text)
    lines: dict[str, int] = {}
    try:
        node = loader.get_single_node()
        if node is None:
            return None, lines
        _check_unique_keys(node, path, "", lines)
        return loader.construct_document(node), lines
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise TargetError(path, None, f"not valid YAML ({getattr(err, 'problem', err)})",
                          "fix the YAML syntax", mark.line + 1 if mark else None) from None
    finally:
        loader.dispose()


class _Fields:
    """Typed access to one YAML mapping; every accessor names the key and its line on errors."""

    def __init__(self, path: Path, data: Mapping[str, Any], lines: dict[str, int], prefix: str = "") -> None:
        self.source = path
        self.data = data
        self.lines = lines
        self.prefix = prefix
        self.base = path.resolve().parent

    def fail(self, key: str, problem: str, fix: str) -> TargetError:
        """An error about ``key`` (of this mapping) with its line."""
        full = self.prefix + key
        return TargetError(self.source, full, problem, fix, self.lines.get(full))

    def unknown(self, known: Any) -> None:
        """Raise on the first key that is not in ``known``."""
        for key in self.data:
            if key not in known:
                raise self.fail(str(key), "unknown key", f"use one of: {', '.join(sorted(known))}")

    def string(self, key: str, default: str) -> str:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.fail(key, f"expected a string, got {_kind(value)}", f'write {key}: "..." (quote it)')
        return value

    def path(self, key: str, required: bool = False) -> Path | None:
        value = self.string(key, "")
        if not value:
            if required:
                raise self.fail(key, "missing", f"set {key}: to a file path (relative to {self.base})")
            return None
        resolved = Path(value) if os.path.isabs(value) else (self.base / os.path.expanduser(value)).resolve()
        if not resolved.is_file():
            raise self.fail(key, f"file not found: {resolved}", "build or copy the file there, or fix the path")
        return resolved

    def address(self, key: str) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise self.fail(key, f"expected an address, got {_kind(value)}", "write an address such as 0x49000000")
        try:
            return int(value, 0) if isinstance(value, str) else value
        except ValueError:
            raise self.fail(key, f"bad address {value!r}", "write an address such as 0x49000000") from None

    def cpus(self, key: str, default: int) -> int:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.fail(key, f"bad CPU count {value!r}: expected a whole number", "write a positive number such as 2")
        return value

    def memory(self, key: str, default: int) -> int:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise self.fail(key, f"expected a size (1024, 1024M or 1G), got {_kind(value)}", "write memory: 1G")
        return parse_memory(value, self.source, self.prefix + key, self.lines.get(self.prefix + key))

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {value!r}", f"write {key}: true or {key}: false")
        return value

    def string_list(self, key: str) -> list[str]:
        value = self.data.get(key, [])
        if isinstance(value, str):
            return split_args(value, self.source, self.prefix + key, self.lines.get(self.prefix + key))
        if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
            raise self.fail(key, f"expected a list of strings, got {_kind(value)}"
                            + (" with other items" if isinstance(value, list) else ""),
                            f'write e.g. {key}: ["-device", "virtio-rng-device"] (quote numbers)')
        return list(value)


def _dom0(fields: _Fields) -> Dom0Boot:
    value = fields.data.get("dom0")
    if value is None:
        raise fields.fail("dom0", "missing", "add a dom0: mapping with at least kernel: (and bootargs:)")
    if not isinstance(value, dict):
        raise fields.fail("dom0", f"expected a mapping, got {_kind(value)}",
                          "write dom0: with indented kernel:, bootargs:, initrd:")
    dom0 = _Fields(fields.source, value, fields.lines, "dom0.")
    dom0.unknown(DOM0_KEYS)
    kernel = dom0.path("kernel", required=True)
    assert kernel is not None
    kernel_addr = dom0.address("kernel_addr")
    return Dom0Boot(kernel=kernel, bootargs=dom0.string("bootargs", xenboot.DOM0_BOOTARGS),
                    initrd=dom0.path("initrd"),
                    kernel_addr=xenboot.DOM0_KERNEL_ADDR if kernel_addr is None else kernel_addr,
                    initrd_addr=dom0.address("initrd_addr"))


def _machine(fields: _Fields, target: Target) -> None:
    target.qemu_binary = fields.string("qemu", "qemu-system-aarch64")
    target.machine_args = ["-machine", fields.string("machine", "virt,virtualization=on,gic-version=3")]
    target.cpu_args = ["-cpu", fields.string("cpu", "cortex-a57")]
    target.smp_args = ["-smp", str(fields.cpus("smp", 2))]
    target.memory_mib = fields.memory("memory", 1024)
    target.network = fields.boolean("network", True)
    target.extra_args = fields.string_list("extra_args")
    if any(a in ("-append", "-kernel") for a in target.extra_args):
        raise fields.fail("extra_args", "contains -kernel/-append", "use kernel: and xen_cmdline: instead")


def _disks(fields: _Fields, target: Target) -> None:
    target.rootfs = fields.path("rootfs")
    target.rootfs_format = fields.string("rootfs_format", "raw")
    if target.rootfs_format not in ("raw", "qcow2"):
        raise fields.fail("rootfs_format", f"unsupported format {target.rootfs_format!r}", "use raw or qcow2")
    target.dtb = fields.path("dtb")


def load_yaml_target(path: os.PathLike[str] | str) -> Target:
    """Read a YAML target description (format in ``docs/harness.md``) into a :class:`Target`."""
    source = Path(path)
    data, lines = _parse(source, read_target_text(source, "YAML target file"))
    if not isinstance(data, dict):
        raise TargetError(source, None, "the top level is not a mapping",
                          "write 'key: value' lines (kernel:, dom0:, rootfs:, ...)")
    fields = _Fields(source, data, lines)
    fields.unknown(YAML_KEYS)
    target = Target(source=source, kind="yaml", name=fields.string("name", source.stem))
    target.kernel = fields.path("kernel", required=True)
    target.kernel_cmdline = fields.string("xen_cmdline", xenboot.xen_cmdline())
    target.dom0 = _dom0(fields)
    _machine(fields, target)
    _disks(fields, target)
    line_of = {"dom0.kernel_addr": lines.get("dom0.kernel_addr", lines.get("dom0", 0)),
               "dom0.initrd_addr": lines.get("dom0.initrd_addr", lines.get("dom0", 0))}
    check_modules_fit(target.dom0.loaders(), target.memory_mib, source, "memory", line_of)
    target.is_xen = True
    target.variables = dict(data)
    return target

