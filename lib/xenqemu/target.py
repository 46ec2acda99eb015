"""Target descriptions: what to boot and how, read from a ``qemuboot.conf`` or a YAML file.

A :class:`Target` is the harness's neutral description of a Xen host image: the QEMU binary,
machine/CPU/memory, the Xen binary given to ``-kernel`` and its command line, the dom0 kernel
(loaded with ``-device guest-loader``), the root filesystem, network and extra devices.
:func:`load_target` reads either

* an oe-core ``qemuboot.conf`` (the INI file ``qemuboot.bbclass`` writes next to an image, one
  ``[config_bsp]`` section of ``QB_*`` variables).  Paths are resolved the way ``scripts/runqemu``
  resolves them when it is given the conf file: ``DEPLOY_DIR_IMAGE`` becomes the folder holding the
  conf file, values starting with ``../`` are relative to that folder, the kernel is
  ``DEPLOY_DIR_IMAGE/basename(QB_DEFAULT_KERNEL)`` (falling back to ``KERNEL_IMAGETYPE``) and the
  root filesystem ``<IMAGE_LINK_NAME or IMAGE_NAME>.<QB_DEFAULT_FSTYPE>``; or
* a small YAML file (see ``docs/harness.md``) whose paths are relative to the YAML file.

Every problem raises :class:`TargetError` naming the file, the key (and line where known) and the
fix.  Nothing here starts QEMU; :mod:`xenqemu.cmdline` turns a target into an argv.
"""

from __future__ import annotations

import configparser
import glob
import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "DEFAULT_DOM0_KERNEL_ADDR",
    "Dom0Boot",
    "Target",
    "TargetError",
    "load_qemuboot",
    "load_target",
    "load_yaml_target",
    "parse_memory",
]

#: Load address of the dom0 kernel for ``-device guest-loader`` (RAM starts at 0x40000000 on
#: QEMU's arm ``virt`` machine; QEMU's own Xen test uses this address).
DEFAULT_DOM0_KERNEL_ADDR = 0x47000000
#: RAM base of QEMU's arm ``virt`` machine.
VIRT_RAM_BASE = 0x40000000
_ALIGN = 0x200000  # 2 MiB, the alignment Xen expects for boot modules

# Slirp MAC prefix used by runqemu; the last byte is 02 for the first instance.
SLIRP_MAC = "52:54:00:12:35:02"


class TargetError(ValueError):
    """A target description is wrong; ``str(err)`` names the file, the key and the fix."""

    def __init__(self, path: os.PathLike | str, key: str | None, problem: str, fix: str,
                 line: int | None = None) -> None:
        self.path = str(path)
        self.key = key
        self.line = line
        self.problem = problem
        self.fix = fix
        where = self.path + (f":{line}" if line else "")
        what = f"key '{key}': " if key else ""
        super().__init__(f"{where}: {what}{problem}. Fix: {fix}")


@dataclass(frozen=True)
class Dom0Boot:
    """The dom0 kernel handed to Xen through QEMU's ``guest-loader`` device."""

    kernel: Path
    bootargs: str = "console=hvc0 root=/dev/vda rw"
    initrd: Path | None = None
    kernel_addr: int = DEFAULT_DOM0_KERNEL_ADDR
    #: None = computed from the kernel size (next 2 MiB boundary after the kernel, plus 2 MiB).
    initrd_addr: int | None = None

    def resolved_initrd_addr(self) -> int:
        """Where the initrd goes: the configured address or one right after the kernel."""
        if self.initrd_addr is not None:
            return self.initrd_addr
        size = self.kernel.stat().st_size if self.kernel.exists() else 64 * 1024 * 1024
        end = self.kernel_addr + size
        return ((end + _ALIGN - 1) // _ALIGN) * _ALIGN + _ALIGN


@dataclass
class Target:
    """Everything needed to build the QEMU command line for one host image.

    ``machine_args``/``cpu_args``/``smp_args``/``extra_args``/``rng_args``/``network_device_args``
    are argv fragments (already split).  ``rootfs_args`` is a template containing ``@ROOTFS@``
    (from ``QB_ROOTFS_OPT``) or empty for the harness's own virtio-mmio drive.
    """

    source: Path
    kind: str  # "qemuboot" or "yaml"
    name: str
    qemu_binary: str = "qemu-system-aarch64"
    machine_args: list[str] = field(default_factory=lambda: ["-machine", "virt,virtualization=on,gic-version=3"])
    cpu_args: list[str] = field(default_factory=lambda: ["-cpu", "cortex-a57"])
    smp_args: list[str] = field(default_factory=lambda: ["-smp", "2"])
    memory_mib: int = 1024
    kernel: Path | None = None
    kernel_cmdline: str = ""
    dtb: Path | None = None
    bios: Path | None = None
    dom0: Dom0Boot | None = None
    rootfs: Path | None = None
    rootfs_format: str = "raw"
    rootfs_args: list[str] = field(default_factory=list)
    network: bool = True
    network_device_args: list[str] = field(
        default_factory=lambda: ["-device", "virtio-net-device,netdev=net0,mac=" + SLIRP_MAC])
    netdev_id: str = "net0"
    rng_args: list[str] = field(default_factory=list)
    extra_args: list[str] = field(default_factory=list)
    serial_consoles: list[str] = field(default_factory=list)
    is_xen: bool = True
    #: Human-readable notes about where the harness deliberately differs from runqemu.
    notes: list[str] = field(default_factory=list)
    #: The raw variables read from the file (upper-case keys for qemuboot.conf).
    variables: dict[str, Any] = field(default_factory=dict)

    def files(self) -> list[Path]:
        """All image files the target refers to (for checks and for cache keys)."""
        out = [p for p in (self.kernel, self.dtb, self.bios, self.rootfs) if p is not None]
        if self.dom0 is not None:
            out.append(self.dom0.kernel)
            if self.dom0.initrd is not None:
                out.append(self.dom0.initrd)
        return out


# --------------------------------------------------------------------------------------------
# helpers


def parse_memory(value: Any, path: os.PathLike | str, key: str, line: int | None = None) -> int:
    """Parse a memory size into MiB.

    Accepts what runqemu accepts for ``QB_MEM`` (``-m 512``, ``512``, ``512M``, ``-m 512m``) and
    also ``1G``/``1.5G`` and plain integers (MiB).  Anything else raises :class:`TargetError`.
    """
    text = str(value).strip()
    m = re.fullmatch(r"(?:-m\s+)?(\d+(?:\.\d+)?)\s*([MmGg]?)(?:i?[Bb])?", text)
    if not m:
        raise TargetError(path, key, f"bad memory value {text!r}",
                          "write a size in MiB such as '1024', '-m 1024', '1024M' or '1G'", line)
    number, unit = float(m.group(1)), m.group(2).upper()
    mib = number * 1024 if unit == "G" else number
    if mib != int(mib) or mib < 64:
        raise TargetError(path, key, f"bad memory value {text!r} ({mib:g} MiB)",
                          "give a whole number of MiB, at least 64 (Xen plus dom0 need ~512)", line)
    return int(mib)


def _ini_line(text: str, key: str) -> int | None:
    for number, raw in enumerate(text.splitlines(), 1):
        if re.match(rf"\s*{re.escape(key)}\s*[=:]", raw, re.IGNORECASE):
            return number
    return None


def _split(value: str, path: Path, key: str, line: int | None) -> list[str]:
    try:
        return shlex.split(value)
    except ValueError as err:
        raise TargetError(path, key, f"cannot split {value!r} into arguments ({err})",
                          "balance the quotes in the value", line) from None


def _first_file(patterns: Sequence[str]) -> Path | None:
    for pattern in patterns:
        matches = sorted(glob.glob(pattern))
        for match in matches:
            if os.path.exists(match):
                return Path(match)
    return None


_FILE_PROPS = ("kernel", "initrd", "file", "dtb")


def _check_device_files(args: Sequence[str], path: Path, key: str, line: int | None) -> None:
    """Check that files named by ``kernel=``/``initrd=``/``file=`` in ``-device``/``-drive`` exist."""
    for arg in args:
        if arg.startswith("-"):
            continue
        for prop in _FILE_PROPS:
            for m in re.finditer(rf"(?:^|,){prop}=([^,]+)", arg):
                value = m.group(1)
                if "@" in value:
                    continue  # a placeholder filled in later (@ROOTFS@)
                if not os.path.exists(value):
                    raise TargetError(path, key, f"{prop}={value} does not exist",
                                      "build or copy that file, or fix the path in the value", line)


# --------------------------------------------------------------------------------------------
# qemuboot.conf


def load_qemuboot(path: os.PathLike | str) -> Target:
    """Read an oe-core ``qemuboot.conf`` into a :class:`Target` (see the module docstring).

    Policy where the harness deliberately differs from runqemu (each also recorded in
    ``Target.notes``):

    * ``QB_SERIAL_OPT``/``QB_TCPSERIAL_OPT`` are ignored: the harness owns the console (the first
      serial port, the PL011 that Xen drives) and puts it on a unix socket.
    * ``QB_SLIRP_OPT`` and runqemu's fixed host ports are ignored: user networking gets port
      forwards only when asked for, and only on 127.0.0.1.
    * ``QB_GRAPHICS`` is ignored (headless); ``QB_CPU_KVM`` is ignored (Xen on Arm needs TCG EL2).
    * For a Xen target (``-kernel`` is Xen, dom0 loaded by ``guest-loader``) ``-append`` is Xen's
      command line: it carries ``QB_KERNEL_CMDLINE_APPEND`` only (empty when
      ``QB_KERNEL_CMDLINE = "none"``).  The Linux-only pieces runqemu would add (``root=``,
      ``console=<SERIAL_CONSOLES>``, ``ip=dhcp``, ``mem=``) belong to dom0, whose command line is
      the guest-loader ``bootargs``.
    * ``-machine virtualization=on,gic-version=3`` is added for a Xen target when ``QB_MACHINE``
      does not already say so (Xen needs EL2 and a GICv3 on QEMU's virt machine).
    * A ``*.zst`` root filesystem is rejected with a fix (runqemu decompresses it on the fly).
    """
    conf = Path(path)
    if not conf.is_file():
        raise TargetError(conf, None, "file not found",
                          "pass the <image>.qemuboot.conf written next to the image in DEPLOY_DIR_IMAGE")
    text = conf.read_text(encoding="utf-8", errors="replace")
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text, source=str(conf))
    except configparser.Error as err:
        raise TargetError(conf, None, f"not an INI file ({err.__class__.__name__}: {err})",
                          "use the qemuboot.conf written by qemuboot.bbclass") from None
    if not parser.has_section("config_bsp"):
        raise TargetError(conf, None, "no [config_bsp] section",
                          "use the qemuboot.conf written by qemuboot.bbclass (it has one [config_bsp] section)")
    folder = Path(os.path.realpath(conf.parent))
    values: dict[str, str] = {}
    for key, value in parser.items("config_bsp"):
        # runqemu: values starting with ../ are relative to the conf file's folder, "." is it.
        if value.startswith("../"):
            value = os.path.abspath(os.path.join(folder, value))
        elif value == ".":
            value = str(folder)
        values[key.upper()] = value
    # runqemu, when given the conf file: the images are next to it, whatever DEPLOY_DIR_IMAGE says.
    deploy = folder
    values["DEPLOY_DIR_IMAGE"] = str(deploy)

    def get(key: str, default: str = "") -> str:
        return values.get(key, default).strip()

    def line(key: str) -> int | None:
        return _ini_line(text, key)

    notes: list[str] = []
    machine_name = get("MACHINE") or deploy.name
    image = get("IMAGE_LINK_NAME") or get("IMAGE_NAME") or conf.name.replace(".qemuboot.conf", "")
    target = Target(source=conf, kind="qemuboot", name=image, variables=dict(values))

    target.qemu_binary = get("QB_SYSTEM_NAME")
    if not target.qemu_binary:
        raise TargetError(conf, "QB_SYSTEM_NAME", "not set",
                          "set QB_SYSTEM_NAME (qemuarm64: qemu-system-aarch64) in the machine or image")

    # Kernel (runqemu check_kernel): basename of QB_DEFAULT_KERNEL, then KERNEL_IMAGETYPE(*).
    kernel_name = os.path.basename(get("QB_DEFAULT_KERNEL"))
    if kernel_name and kernel_name != "none":
        imagetype = get("KERNEL_IMAGETYPE")
        patterns = [str(deploy / kernel_name)]
        if imagetype:
            patterns += [str(deploy / imagetype), str(deploy / imagetype) + "*"]
        kernel = _first_file(patterns)
        if kernel is None:
            raise TargetError(conf, "QB_DEFAULT_KERNEL", f"kernel not found: {', '.join(patterns)}",
                              "deploy the kernel (for Xen: xen-<MACHINE>) next to the conf file",
                              line("QB_DEFAULT_KERNEL"))
        target.kernel = kernel

    # Device tree (runqemu check_dtb).
    dtb = get("QB_DTB")
    if dtb:
        found = _first_file([str(deploy / dtb), str(deploy / dtb) + "*", str(deploy / "*.dtb")])
        if found is None:
            raise TargetError(conf, "QB_DTB", f"device tree {dtb} not found in {deploy}",
                              "deploy the .dtb or remove QB_DTB", line("QB_DTB"))
        target.dtb = found
    bios = os.path.basename(get("QB_DEFAULT_BIOS"))
    if bios and bios != "none":
        target.bios = deploy / bios
        if not target.bios.exists():
            raise TargetError(conf, "QB_DEFAULT_BIOS", f"{target.bios} not found",
                              "deploy the firmware or remove QB_DEFAULT_BIOS", line("QB_DEFAULT_BIOS"))

    # Machine, CPU, SMP, memory.
    target.machine_args = _split(get("QB_MACHINE"), conf, "QB_MACHINE", line("QB_MACHINE"))
    if not target.machine_args:
        raise TargetError(conf, "QB_MACHINE", "not set", "set QB_MACHINE, e.g. '-machine virt'")
    target.cpu_args = _split(get("QB_CPU"), conf, "QB_CPU", line("QB_CPU"))
    target.smp_args = _split(get("QB_SMP"), conf, "QB_SMP", line("QB_SMP"))
    target.memory_mib = parse_memory(get("QB_MEM") or "-m 256", conf, "QB_MEM", line("QB_MEM"))

    # Extra options (runqemu setup_final: QB_RNG, QB_OPT_APPEND with @DEPLOY_DIR_IMAGE@).
    opt_append = get("QB_OPT_APPEND").replace("@DEPLOY_DIR_IMAGE@", str(deploy))
    target.extra_args = _split(opt_append, conf, "QB_OPT_APPEND", line("QB_OPT_APPEND"))
    _check_device_files(target.extra_args, conf, "QB_OPT_APPEND", line("QB_OPT_APPEND"))
    target.rng_args = _split(get("QB_RNG"), conf, "QB_RNG", line("QB_RNG"))

    uses_guest_loader = any("guest-loader" in a for a in target.extra_args)
    kernel_is_xen = bool(target.kernel and target.kernel.name.lower().startswith("xen"))
    target.is_xen = uses_guest_loader or kernel_is_xen
    target.serial_consoles = [e.split(";")[-1] for e in get("SERIAL_CONSOLES").split() if e]

    # Root filesystem (runqemu check_rootfs / setup_rootfs).
    fstype = get("QB_DEFAULT_FSTYPE")
    if get("QB_ROOTFS") != "none" and fstype and fstype != "none":
        if fstype.endswith((".zst", ".gz", ".bz2", ".xz")) and not fstype.startswith("cpio"):
            raise TargetError(conf, "QB_DEFAULT_FSTYPE", f"compressed root filesystem type {fstype!r}",
                              "set QB_DEFAULT_FSTYPE = \"ext4\" and add ext4 to IMAGE_FSTYPES "
                              "(the harness boots uncompressed images)", line("QB_DEFAULT_FSTYPE"))
        names = [n for n in (get("IMAGE_LINK_NAME"), get("IMAGE_NAME")) if n]
        patterns = [str(deploy / f"{n}.{fstype}") for n in names]
        patterns += [str(deploy / f"{n}*.{fstype}") for n in (get("IMAGE_NAME"), get("IMAGE_LINK_NAME")) if n]
        rootfs = _first_file(patterns)
        if rootfs is None:
            raise TargetError(conf, "QB_DEFAULT_FSTYPE",
                              f"root filesystem not found: {patterns[0] if patterns else fstype}",
                              f"build the image with IMAGE_FSTYPES containing {fstype} "
                              "(or fix IMAGE_LINK_NAME/QB_DEFAULT_FSTYPE)", line("QB_DEFAULT_FSTYPE"))
        target.rootfs = rootfs
        target.rootfs_format = fstype if fstype in ("qcow2", "vmdk", "vdi", "vhd", "vhdx") else "raw"
        rootfs_opt = get("QB_ROOTFS_OPT")
        if rootfs_opt:
            target.rootfs_args = _split(rootfs_opt, conf, "QB_ROOTFS_OPT", line("QB_ROOTFS_OPT"))
            if not any("@ROOTFS@" in a for a in target.rootfs_args):
                raise TargetError(conf, "QB_ROOTFS_OPT", "has no @ROOTFS@ placeholder",
                                  "write the drive as file=@ROOTFS@", line("QB_ROOTFS_OPT"))

    # Network (runqemu setup_slirp): our own -netdev user, QB_NETWORK_DEVICE with @MAC@.
    target.network = get("QB_NET") != "none"
    device = get("QB_NETWORK_DEVICE") or "-device virtio-net-pci,netdev=net0,mac=@MAC@"
    target.network_device_args = [a.replace("@MAC@", SLIRP_MAC)
                                  for a in _split(device, conf, "QB_NETWORK_DEVICE", line("QB_NETWORK_DEVICE"))]
    m = re.search(r"netdev=([\w.-]+)", device)
    target.netdev_id = m.group(1) if m else "net0"

    # Command line (runqemu start_qemu).
    cmdline_none = get("QB_KERNEL_CMDLINE") == "none"
    append = get("QB_KERNEL_CMDLINE_APPEND")
    if target.is_xen:
        target.kernel_cmdline = "" if cmdline_none else append
        notes.append("-append is Xen's command line: QB_KERNEL_CMDLINE_APPEND only; dom0's command "
                     "line is the guest-loader bootargs")
        machine_text = " ".join(target.machine_args)
        if not re.search(r"virtualization=(on|true|yes)", machine_text):
            target.machine_args += ["-machine", "virtualization=on"]
            notes.append("added -machine virtualization=on (Xen needs EL2)")
        if "gic-version" not in machine_text:
            target.machine_args += ["-machine", "gic-version=3"]
            notes.append("added -machine gic-version=3")
    elif not cmdline_none:
        root = get("QB_KERNEL_ROOT") or "/dev/vda"
        if not ({"ro", "rw"} & set(root.split())):
            root += " rw"
        parts = [f"root={root}"]
        if not machine_name.startswith(("qemumips", "qemux86", "qemuloongarch64")) and not dtb:
            parts.append(f"mem={target.memory_mib}M")
        if target.network:
            parts.append(get("QB_CMDLINE_IP_SLIRP") or "ip=dhcp")
        parts += [f"console={c}" for c in target.serial_consoles]
        if append:
            parts.append(append)
        target.kernel_cmdline = " ".join(parts)
    for ignored in ("QB_SERIAL_OPT", "QB_TCPSERIAL_OPT", "QB_SLIRP_OPT", "QB_GRAPHICS"):
        if get(ignored):
            notes.append(f"{ignored} ignored (the harness owns console, network forwards and display)")
    target.notes = notes
    return target


# --------------------------------------------------------------------------------------------
# YAML

_YAML_KEYS = {
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
_DOM0_KEYS = {"kernel", "bootargs", "initrd", "kernel_addr", "initrd_addr"}


def _yaml_lines(text: str) -> dict[str, int]:
    """Map 'key' and 'dom0.key' to their 1-based line numbers in a YAML document."""
    lines: dict[str, int] = {}
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = str(key_node.value)
            lines[key] = key_node.start_mark.line + 1
            if isinstance(value_node, yaml.MappingNode):
                for sub_key, _ in value_node.value:
                    lines[f"{key}.{sub_key.value}"] = sub_key.start_mark.line + 1
    return lines


def load_yaml_target(path: os.PathLike | str) -> Target:
    """Read a YAML target description (format in ``docs/harness.md``) into a :class:`Target`."""
    source = Path(path)
    if not source.is_file():
        raise TargetError(source, None, "file not found", "pass the path of an existing YAML target file")
    text = source.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise TargetError(source, None, f"not valid YAML ({getattr(err, 'problem', err)})",
                          "fix the YAML syntax", mark.line + 1 if mark else None) from None
    lines = _yaml_lines(text)
    if not isinstance(data, dict):
        raise TargetError(source, None, "the top level is not a mapping",
                          "write 'key: value' lines (kernel:, dom0:, rootfs:, ...)")
    base = source.resolve().parent

    def fail(key: str, problem: str, fix: str) -> TargetError:
        return TargetError(source, key, problem, fix, lines.get(key))

    for key in data:
        if key not in _YAML_KEYS:
            known = ", ".join(sorted(_YAML_KEYS))
            raise fail(str(key), "unknown key", f"use one of: {known}")

    def file_value(key: str, value: Any, required: bool = False) -> Path | None:
        if value is None or value == "":
            if required:
                raise fail(key, "missing", f"set {key}: to a file path (relative to {base})")
            return None
        if not isinstance(value, str):
            raise fail(key, f"expected a file path, got {type(value).__name__}", "write the path as a string")
        resolved = (base / os.path.expanduser(value)).resolve() if not os.path.isabs(value) else Path(value)
        if not resolved.is_file():
            raise fail(key, f"file not found: {resolved}", "build or copy the file there, or fix the path")
        return resolved

    def text_value(key: str, default: str) -> str:
        value = data.get(key, default)
        if value is None:
            return default
        if not isinstance(value, (str, int)):
            raise fail(key, f"expected a string, got {type(value).__name__}", "write a plain string")
        return str(value)

    def address(key: str, value: Any) -> int | None:
        if value is None:
            return None
        try:
            return int(value, 0) if isinstance(value, str) else int(value)
        except (TypeError, ValueError):
            raise fail(key, f"bad address {value!r}", "write an address such as 0x47000000") from None

    target = Target(source=source, kind="yaml", name=text_value("name", source.stem))
    target.qemu_binary = text_value("qemu", "qemu-system-aarch64")
    target.kernel = file_value("kernel", data.get("kernel"), required=True)
    target.kernel_cmdline = text_value("xen_cmdline", "console=dtuart dom0_mem=512M bootscrub=0")

    dom0 = data.get("dom0")
    if dom0 is None:
        raise fail("dom0", "missing", "add a dom0: mapping with at least kernel: (and bootargs:)")
    if not isinstance(dom0, dict):
        raise fail("dom0", "expected a mapping", "write dom0: with indented kernel:, bootargs:, initrd:")
    for key in dom0:
        if key not in _DOM0_KEYS:
            raise TargetError(source, f"dom0.{key}", "unknown key",
                              f"use one of: {', '.join(sorted(_DOM0_KEYS))}", lines.get(f"dom0.{key}"))
    dom0_kernel = file_value("dom0.kernel", dom0.get("kernel"), required=True)
    assert dom0_kernel is not None
    kernel_addr = address("dom0.kernel_addr", dom0.get("kernel_addr"))
    target.dom0 = Dom0Boot(
        kernel=dom0_kernel,
        bootargs=str(dom0.get("bootargs", "console=hvc0 root=/dev/vda rw")),
        initrd=file_value("dom0.initrd", dom0.get("initrd")),
        kernel_addr=DEFAULT_DOM0_KERNEL_ADDR if kernel_addr is None else kernel_addr,
        initrd_addr=address("dom0.initrd_addr", dom0.get("initrd_addr")),
    )
    target.rootfs = file_value("rootfs", data.get("rootfs"))
    target.rootfs_format = text_value("rootfs_format", "raw")
    if target.rootfs_format not in ("raw", "qcow2"):
        raise fail("rootfs_format", f"unsupported format {target.rootfs_format!r}", "use raw or qcow2")
    target.machine_args = ["-machine", text_value("machine", "virt,virtualization=on,gic-version=3")]
    target.cpu_args = ["-cpu", text_value("cpu", "cortex-a57")]
    smp = data.get("smp", 2)
    if not isinstance(smp, int) or isinstance(smp, bool) or smp < 1:
        raise fail("smp", f"bad CPU count {smp!r}", "write a positive whole number such as 2")
    target.smp_args = ["-smp", str(smp)]
    target.memory_mib = parse_memory(data.get("memory", 1024), source, "memory", lines.get("memory"))
    network = data.get("network", True)
    if not isinstance(network, bool):
        raise fail("network", f"expected true or false, got {network!r}", "write network: true or network: false")
    target.network = network
    extra = data.get("extra_args", [])
    if isinstance(extra, str):
        extra = _split(extra, source, "extra_args", lines.get("extra_args"))
    if not isinstance(extra, list) or not all(isinstance(a, (str, int)) for a in extra):
        raise fail("extra_args", "expected a list of strings", 'write e.g. extra_args: ["-device", "virtio-rng-device"]')
    target.extra_args = [str(a) for a in extra]
    if any(a == "-append" or a == "-kernel" for a in target.extra_args):
        raise fail("extra_args", "contains -kernel/-append", "use kernel: and xen_cmdline: instead")
    target.dtb = file_value("dtb", data.get("dtb"))

    ram_end = VIRT_RAM_BASE + target.memory_mib * 1024 * 1024
    top = target.dom0.kernel_addr + target.dom0.kernel.stat().st_size
    if target.dom0.initrd is not None:
        top = max(top, target.dom0.resolved_initrd_addr() + target.dom0.initrd.stat().st_size)
    if not VIRT_RAM_BASE <= target.dom0.kernel_addr or top > ram_end:
        raise fail("dom0.kernel_addr", f"dom0 kernel/initrd ({target.dom0.kernel_addr:#x}..{top:#x}) "
                   f"do not fit in RAM {VIRT_RAM_BASE:#x}..{ram_end:#x}",
                   "raise memory: or lower dom0.kernel_addr/initrd_addr")
    target.is_xen = True
    target.variables = dict(data)
    return target


# --------------------------------------------------------------------------------------------


def load_target(path: os.PathLike | str) -> Target:
    """Load a target from a ``*.qemuboot.conf`` (INI) or a ``*.yaml``/``*.yml`` file.

    The kind is chosen by the file name; a file with another name is sniffed (``[config_bsp]``
    means qemuboot.conf).
    """
    p = Path(path)
    name = p.name.lower()
    if name.endswith((".yaml", ".yml")):
        return load_yaml_target(p)
    if name.endswith(".conf"):
        return load_qemuboot(p)
    if not p.is_file():
        raise TargetError(p, None, "file not found", "pass a <image>.qemuboot.conf or a target .yaml file")
    head = p.read_text(encoding="utf-8", errors="replace")[:4096]
    if "[config_bsp]" in head:
        return load_qemuboot(p)
    return load_yaml_target(p)
