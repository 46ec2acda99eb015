"""Read an oe-core ``qemuboot.conf`` into a :class:`~xenqemu.target.Target`, as runqemu would boot it.

The file is read by :func:`xenboot.read_qemuboot` (runqemu's own reading rules); this module
applies runqemu's lookups (kernel, device tree, BIOS, root filesystem, network, command line)
and the harness's deliberate differences, listed in :func:`load_qemuboot`.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from pathlib import Path

import xenboot
from xenboot import BootConfigError, QemubootConf, XenBoot

from .target import (
    SLIRP_MAC,
    Target,
    TargetError,
    check_modules_fit,
    parse_memory,
    split_args,
)

__all__ = ["load_qemuboot"]


def _first_file(patterns: Sequence[str]) -> Path | None:
    for pattern in patterns:
        for match in sorted(glob.glob(pattern)):
            if os.path.exists(match):
                return Path(match)
    return None


def _read_conf(path: Path) -> QemubootConf:
    try:
        return xenboot.read_qemuboot(path)
    except BootConfigError as err:
        raise TargetError.from_boot(err, path) from None


def _fail(conf: QemubootConf, key: str | None, problem: str, fix: str) -> TargetError:
    return TargetError(conf.path, key, problem, fix, conf.line(key) if key else None)


def _split(conf: QemubootConf, key: str, value: str | None = None) -> list[str]:
    return split_args(conf.get(key) if value is None else value, conf.path, key, conf.line(key))


def _set_kernel_files(conf: QemubootConf, target: Target) -> None:
    """runqemu's check_kernel, check_dtb and the BIOS lookup."""
    deploy = conf.deploy_dir
    kernel_name = os.path.basename(conf.get("QB_DEFAULT_KERNEL"))
    if kernel_name and kernel_name != "none":
        imagetype = conf.get("KERNEL_IMAGETYPE")
        patterns = [str(deploy / kernel_name)]
        if imagetype:
            patterns += [str(deploy / imagetype), str(deploy / imagetype) + "*"]
        target.kernel = _first_file(patterns)
        if target.kernel is None:
            raise _fail(conf, "QB_DEFAULT_KERNEL", f"kernel not found: {', '.join(patterns)}",
                        "deploy the kernel (for Xen: xen-<MACHINE>) next to the conf file")
    dtb = conf.get("QB_DTB")
    if dtb:
        target.dtb = _first_file([str(deploy / dtb), str(deploy / dtb) + "*", str(deploy / "*.dtb")])
        if target.dtb is None:
            raise _fail(conf, "QB_DTB", f"device tree {dtb} not found in {deploy}", "deploy the .dtb or remove QB_DTB")
    bios = os.path.basename(conf.get("QB_DEFAULT_BIOS"))
    if bios and bios != "none":
        target.bios = deploy / bios
        if not target.bios.exists():
            raise _fail(conf, "QB_DEFAULT_BIOS", f"{target.bios} not found",
                        "deploy the firmware or remove QB_DEFAULT_BIOS")


def _set_machine(conf: QemubootConf, target: Target) -> None:
    """Machine, CPU, SMP, memory, and the extra options (runqemu's setup_final)."""
    target.machine_args = _split(conf, "QB_MACHINE")
    if not target.machine_args:
        raise _fail(conf, "QB_MACHINE", "not set", "set QB_MACHINE, e.g. '-machine virt'")
    target.cpu_args = _split(conf, "QB_CPU")
    target.smp_args = _split(conf, "QB_SMP")
    target.memory_mib = parse_memory(conf.get("QB_MEM") or "-m 256", conf.path, "QB_MEM", conf.line("QB_MEM"))
    opt_append = conf.get("QB_OPT_APPEND").replace(xenboot.DEPLOY_DIR_PLACEHOLDER, str(conf.deploy_dir))
    target.extra_args = _split(conf, "QB_OPT_APPEND", opt_append)
    for prop, value in xenboot.qemuopts.files_named(target.extra_args):
        if "@" not in value and not os.path.exists(value):
            raise _fail(conf, "QB_OPT_APPEND", f"{prop}={value} does not exist",
                        "build or copy that file, or fix the path in the value")
    for module, _ in xenboot.multiboot_modules(target.extra_args):
        if not os.path.exists(module):
            raise _fail(conf, "QB_OPT_APPEND", f"multiboot module {module} (-initrd) does not exist",
                        "build or copy that file, or fix the path in the value")
    target.rng_args = _split(conf, "QB_RNG")
    uses_guest_loader = any("guest-loader" in a for a in target.extra_args)
    kernel_is_xen = bool(target.kernel and target.kernel.name.lower().startswith("xen"))
    target.is_xen = uses_guest_loader or kernel_is_xen
    target.serial_consoles = [e.split(";")[-1] for e in conf.get("SERIAL_CONSOLES").split() if e]


def _check_guest_loaders(conf: QemubootConf, target: Target) -> None:
    """dom0's modules from QB_OPT_APPEND must fit in QB_MEM without overlapping."""
    try:
        loaders = xenboot.guest_loaders_in(target.extra_args)
        target.xen_contract = XenBoot.from_variables(conf.values, path=str(conf.path), line_of=conf.lines)
    except BootConfigError as err:
        raise TargetError.from_boot(err, conf.path, "QB_OPT_APPEND", conf.line("QB_OPT_APPEND")) from None
    if loaders and any("virt" in a for a in target.machine_args):
        check_modules_fit(loaders, target.memory_mib, conf.path, "QB_MEM", conf.lines)


def _set_rootfs(conf: QemubootConf, target: Target) -> None:
    """runqemu's check_rootfs / setup_rootfs."""
    fstype = conf.get("QB_DEFAULT_FSTYPE")
    if conf.get("QB_ROOTFS") == "none" or not fstype or fstype == "none":
        return
    if fstype.endswith((".zst", ".gz", ".bz2", ".xz")) and not fstype.startswith("cpio"):
        raise _fail(conf, "QB_DEFAULT_FSTYPE", f"compressed root filesystem type {fstype!r}",
                    "set QB_DEFAULT_FSTYPE = \"ext4\" and add ext4 to IMAGE_FSTYPES "
                    "(the harness boots uncompressed images)")
    link, image = conf.get("IMAGE_LINK_NAME"), conf.get("IMAGE_NAME")
    patterns = [str(conf.deploy_dir / f"{n}.{fstype}") for n in (link, image) if n]
    patterns += [str(conf.deploy_dir / f"{n}*.{fstype}") for n in (image, link) if n]
    rootfs = _first_file(patterns)
    if rootfs is None:
        raise _fail(conf, "QB_DEFAULT_FSTYPE", f"root filesystem not found: {patterns[0] if patterns else fstype}",
                    f"build the image with IMAGE_FSTYPES containing {fstype} "
                    "(or fix IMAGE_LINK_NAME/QB_DEFAULT_FSTYPE)")
    target.rootfs = rootfs
    target.rootfs_format = fstype if fstype in ("qcow2", "vmdk", "vdi", "vhd", "vhdx") else "raw"
    if conf.get("QB_ROOTFS_OPT"):
        target.rootfs_args = _split(conf, "QB_ROOTFS_OPT")
        if not any("@ROOTFS@" in a for a in target.rootfs_args):
            raise _fail(conf, "QB_ROOTFS_OPT", "has no @ROOTFS@ placeholder", "write the drive as file=@ROOTFS@")


def _set_network(conf: QemubootConf, target: Target) -> None:
    """runqemu's setup_slirp: our own -netdev user, QB_NETWORK_DEVICE with @MAC@."""
    target.network = conf.get("QB_NET") != "none"
    device = conf.get("QB_NETWORK_DEVICE") or "-device virtio-net-pci,netdev=net0,mac=@MAC@"
    target.network_device_args = [a.replace("@MAC@", SLIRP_MAC) for a in _split(conf, "QB_NETWORK_DEVICE", device)]
    m = re.search(r"netdev=([\w.-]+)", device)
    target.netdev_id = m.group(1) if m else "net0"


def _set_xen_cmdline(conf: QemubootConf, target: Target, notes: list[str]) -> None:
    """For Xen, -append is Xen's command line: QB_KERNEL_CMDLINE_APPEND only."""
    append = conf.get("QB_KERNEL_CMDLINE_APPEND")
    target.kernel_cmdline = "" if conf.get("QB_KERNEL_CMDLINE") == "none" else append
    if not is_arm(target):
        notes.append("-append is Xen's command line: QB_KERNEL_CMDLINE_APPEND only; dom0's command "
                     "line is its multiboot module's (-initrd)")
        return
    notes.append("-append is Xen's command line: QB_KERNEL_CMDLINE_APPEND only; dom0's command "
                 "line is the guest-loader bootargs")
    machine_text = " ".join(target.machine_args)
    if not re.search(r"virtualization=(on|true|yes)", machine_text):
        target.machine_args += ["-machine", "virtualization=on"]
        notes.append("added -machine virtualization=on (Xen needs EL2)")
    if "gic-version" not in machine_text:
        target.machine_args += ["-machine", "gic-version=3"]
        notes.append("added -machine gic-version=3")


def is_arm(target: Target) -> bool:
    """Whether the target runs on QEMU's Arm ``virt`` machine (Xen needs EL2 and a GIC there)."""
    return "-x86" not in target.qemu_binary and not target.qemu_binary.endswith(("i386", "x86_64"))


def _set_linux_cmdline(conf: QemubootConf, target: Target) -> None:
    """runqemu's start_qemu for a plain Linux kernel: root=, mem=, ip=, console=, then the append."""
    if conf.get("QB_KERNEL_CMDLINE") == "none":
        return
    root = conf.get("QB_KERNEL_ROOT") or "/dev/vda"
    if not ({"ro", "rw"} & set(root.split())):
        root += " rw"
    parts = [f"root={root}"]
    machine_name = conf.get("MACHINE") or conf.deploy_dir.name
    if not machine_name.startswith(("qemumips", "qemux86", "qemuloongarch64")) and not conf.get("QB_DTB"):
        parts.append(f"mem={target.memory_mib}M")
    if target.network:
        parts.append(conf.get("QB_CMDLINE_IP_SLIRP") or "ip=dhcp")
    parts += [f"console={c}" for c in target.serial_consoles]
    if conf.get("QB_KERNEL_CMDLINE_APPEND"):
        parts.append(conf.get("QB_KERNEL_CMDLINE_APPEND"))
    target.kernel_cmdline = " ".join(parts)


def load_qemuboot(path: os.PathLike[str] | str) -> Target:
    """Read an oe-core ``qemuboot.conf`` into a :class:`Target` (see the module docstring).

    Policy where the harness deliberately differs from runqemu (each also recorded in
    ``Target.notes``): ``QB_SERIAL_OPT``/``QB_TCPSERIAL_OPT`` are ignored (the harness puts the
    first serial port, the PL011 that Xen drives, on a unix socket); ``QB_SLIRP_OPT`` and
    runqemu's fixed host ports are ignored (port forwards only when asked, only on 127.0.0.1);
    ``QB_GRAPHICS`` and ``QB_CPU_KVM`` are ignored (headless, TCG); for a Xen target ``-append``
    is Xen's command line and, on Arm, ``-machine virtualization=on,gic-version=3`` is added when
    missing (on x86 dom0 is a multiboot module of ``-initrd`` in ``QB_OPT_APPEND``);
    a compressed root filesystem is refused with a fix.
    """
    conf = _read_conf(Path(path))
    image = conf.get("IMAGE_LINK_NAME") or conf.get("IMAGE_NAME") or conf.path.name.replace(".qemuboot.conf", "")
    target = Target(source=conf.path, kind="qemuboot", name=image, variables=dict(conf.values))
    target.qemu_binary = conf.get("QB_SYSTEM_NAME")
    if not target.qemu_binary:
        raise _fail(conf, "QB_SYSTEM_NAME", "not set",
                    "set QB_SYSTEM_NAME (qemuarm64: qemu-system-aarch64) in the machine or image")
    _set_kernel_files(conf, target)
    _set_machine(conf, target)
    _check_guest_loaders(conf, target)
    _set_rootfs(conf, target)
    _set_network(conf, target)
    notes: list[str] = []
    if target.is_xen:
        _set_xen_cmdline(conf, target, notes)
    else:
        _set_linux_cmdline(conf, target)
    for ignored in ("QB_SERIAL_OPT", "QB_TCPSERIAL_OPT", "QB_SLIRP_OPT", "QB_GRAPHICS"):
        if conf.get(ignored):
            notes.append(f"{ignored} ignored (the harness owns console, network forwards and display)")
    target.notes = notes
    return target


