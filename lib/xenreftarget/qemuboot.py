"""The reference target's ``qemuboot.conf``, in the form oe-core's ``qemuboot.bbclass`` writes.

oe-core writes an INI file with one section ``[config_bsp]`` through :mod:`configparser`, whose
default key transform lower-cases the names (``qb_mem = -m 1024``); ``runqemu`` upper-cases them
again when reading, replaces a value of ``.`` (and values starting with ``../``) by paths relative
to the file's folder, and ``@DEPLOY_DIR_IMAGE@`` inside ``QB_OPT_APPEND`` by that folder.

How Xen boots here (``research/xen-on-qemu.md``): the Xen binary is QEMU's ``-kernel``, so the
``-append`` that runqemu builds (its ``root=``/``console=`` options, then
``QB_KERNEL_CMDLINE_APPEND``) is Xen's command line; Xen ignores the Linux options and the last
``console=`` wins, so ``QB_KERNEL_CMDLINE_APPEND`` ends in ``console=dtuart``. dom0's kernel and
the initrd are loaded by QEMU's ``guest-loader`` devices, which put them into the device tree as
Xen multiboot modules; dom0's command line is the kernel loader's ``bootargs``.
"""

from __future__ import annotations

import configparser
import io
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SECTION = "config_bsp"


class QemubootError(ValueError):
    """A setting cannot be written into a qemuboot.conf that runqemu would read back unchanged."""


@dataclass(frozen=True)
class BootSettings:
    """Everything that describes how QEMU boots the reference target.

    File names are relative to the deploy folder that holds the qemuboot.conf.
    """

    machine: str = "qemuarm64"
    image_link_name: str = "xen-image-minimal-qemuarm64.rootfs"
    xen_binary: str = "xen-qemuarm64"
    kernel: str = "Image"
    initrd: str = "xen-ref-initramfs-qemuarm64.cpio.gz"
    memory_mb: int = 1024
    smp: int = 2
    cpu: str = "cortex-a57"
    dom0_memory_mb: int = 384
    dom0_vcpus: int = 2
    #: Where the guest-loader devices place dom0's kernel and the initrd in guest memory.
    kernel_address: int = 0x49000000
    initrd_address: int = 0x4C000000
    dom0_bootargs: str = "console=hvc0 root=/dev/vda rw quiet"
    xen_extra: tuple[str, ...] = ("bootscrub=0", "loglvl=warning", "guest_loglvl=warning")
    serial_consoles: str = "115200;hvc0"
    qemu_bindir: str = "/usr/bin"

    def xen_command_line(self) -> str:
        """Xen's options; ``console=dtuart`` comes last so that it wins over runqemu's console=."""
        options = [f"dom0_mem={self.dom0_memory_mb}M,max:{self.dom0_memory_mb}M",
                   f"dom0_max_vcpus={self.dom0_vcpus}", *self.xen_extra, "console=dtuart"]
        return " ".join(options)

    def guest_loader_options(self) -> str:
        """The two ``-device guest-loader`` options (dom0 kernel with bootargs, then the initrd)."""
        if "," in self.dom0_bootargs or '"' in self.dom0_bootargs:
            raise QemubootError(
                f"dom0 bootargs {self.dom0_bootargs!r} contain ',' or '\"', which QEMU's -device "
                "parser would split; remove them")
        kernel = (f"-device guest-loader,addr={self.kernel_address:#x},"
                  f"kernel=@DEPLOY_DIR_IMAGE@/{self.kernel},bootargs=\"{self.dom0_bootargs}\"")
        initrd = f"-device guest-loader,addr={self.initrd_address:#x},initrd=@DEPLOY_DIR_IMAGE@/{self.initrd}"
        return f"{kernel} {initrd}"


def check_load_addresses(settings: BootSettings, kernel_size: int, initrd_size: int) -> None:
    """Fail when the kernel would overlap the initrd, or the initrd would run past the RAM."""
    if settings.kernel_address + kernel_size > settings.initrd_address:
        raise QemubootError(
            f"the kernel ({kernel_size} bytes at {settings.kernel_address:#x}) overlaps the initrd "
            f"at {settings.initrd_address:#x}; raise BootSettings.initrd_address")
    ram_end = 0x40000000 + settings.memory_mb * 1024 * 1024
    if settings.initrd_address + initrd_size > ram_end:
        raise QemubootError(
            f"the initrd ({initrd_size} bytes at {settings.initrd_address:#x}) runs past the end of "
            f"RAM at {ram_end:#x}; give QEMU more memory")


def qemuboot_values(settings: BootSettings) -> dict[str, str]:
    """The variables the ``xen-image-minimal`` recipe would export, upper-case names as in BitBake."""
    values = {
        "DEPLOY_DIR_IMAGE": ".",
        "IMAGE_LINK_NAME": settings.image_link_name,
        "IMAGE_NAME": settings.image_link_name,
        "MACHINE": settings.machine,
        "TUNE_ARCH": "aarch64",
        "KERNEL_IMAGETYPE": settings.kernel,
        "SERIAL_CONSOLES": settings.serial_consoles,
        # The host's QEMU stands in for qemu-helper-native's sysroot.
        "STAGING_BINDIR_NATIVE": settings.qemu_bindir,
        "QB_SYSTEM_NAME": "qemu-system-aarch64",
        "QB_MACHINE": "-machine virt,virtualization=on,gic-version=3",
        "QB_CPU": f"-cpu {settings.cpu}",
        "QB_CPU_KVM": "-cpu host -machine gic-version=3",
        "QB_SMP": f"-smp {settings.smp}",
        "QB_MEM": f"-m {settings.memory_mb}",
        "QB_DEFAULT_KERNEL": settings.xen_binary,
        "QB_DEFAULT_FSTYPE": "ext4",
        "QB_KERNEL_ROOT": "/dev/vda rw",
        "QB_DRIVE_TYPE": "/dev/vd",
        "QB_KERNEL_CMDLINE_APPEND": settings.xen_command_line(),
        "QB_OPT_APPEND": settings.guest_loader_options(),
        "QB_ROOTFS_OPT": "-drive id=disk0,file=@ROOTFS@,if=none,format=raw "
                         "-device virtio-blk-device,drive=disk0",
        "QB_NETWORK_DEVICE": "-device virtio-net-device,netdev=net0,mac=@MAC@",
        "QB_TAP_OPT": "-netdev tap,id=net0,ifname=@TAP@,script=no,downscript=no",
        "QB_NO_PNI": "net.ifnames=0",
        # Xen hands virtio-mmio devices to dom0 directly; PCI devices (runqemu's default RNG and
        # the qemuarm64 GPU) are left out.
        "QB_RNG": "",
        "QB_GRAPHICS": "",
        "QB_SERIAL_OPT": "-serial mon:stdio",
    }
    return values


def render_qemuboot_conf(values: Mapping[str, str]) -> str:
    """Render ``values`` as oe-core does: one ``[config_bsp]`` section, sorted lower-case keys.

    Values must survive runqemu's reading (a default :class:`configparser.ConfigParser`, which
    interpolates ``%``) and its ``shlex`` split of the QEMU command line.
    """
    parser = configparser.ConfigParser()
    parser.add_section(SECTION)
    for key in sorted(values):
        value = values[key]
        if "%" in value or "\n" in value:
            raise QemubootError(f"{key} = {value!r}: '%' and newlines cannot be stored in qemuboot.conf")
        try:
            shlex.split(value)
        except ValueError as err:
            raise QemubootError(f"{key} = {value!r}: unbalanced quotes ({err})") from None
        parser.set(SECTION, key, value)
    out = io.StringIO()
    parser.write(out)
    return out.getvalue()


def read_qemuboot_conf(path: Path) -> dict[str, str]:
    """Read a qemuboot.conf the way runqemu does: upper-case names, ``.`` made the file's folder."""
    parser = configparser.ConfigParser()
    if not parser.read(path):
        raise QemubootError(f"{path}: cannot be read")
    values: dict[str, str] = {}
    for key, value in parser.items(SECTION):
        if value.startswith("../"):
            value = str((path.parent / value).resolve())
        elif value == ".":
            value = str(path.parent)
        values[key.upper()] = value
    return values


def runqemu_like_command(conf: Path, rootfs: Path) -> list:
    """The QEMU command line runqemu would build from ``conf`` (nographic, slirp), as a list.

    Used to check the file is complete; it mirrors runqemu's assembly order closely enough to boot.
    """
    values = read_qemuboot_conf(conf)
    deploy = values["DEPLOY_DIR_IMAGE"]
    parts = [
        str(Path(values["STAGING_BINDIR_NATIVE"]) / values["QB_SYSTEM_NAME"]),
        "-netdev user,id=net0", values["QB_NETWORK_DEVICE"].replace("@MAC@", "52:54:00:12:34:02"),
        values.get("QB_RNG", ""),
        values["QB_ROOTFS_OPT"].replace("@ROOTFS@", str(rootfs)),
        values["QB_OPT_APPEND"].replace("@DEPLOY_DIR_IMAGE@", deploy),
        values["QB_MACHINE"], values["QB_CPU"], values["QB_SMP"], values["QB_MEM"],
        "-nographic -serial mon:stdio",
        "-kernel", str(Path(deploy) / values["QB_DEFAULT_KERNEL"]),
    ]
    append = f"root={values['QB_KERNEL_ROOT']} console=ttyAMA0 console=hvc0 {values['QB_KERNEL_CMDLINE_APPEND']}"
    return shlex.split(" ".join(parts)) + ["-append", append]
