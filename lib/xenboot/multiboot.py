"""Xen on x86: Xen is the multiboot kernel; dom0's kernel (with its command line) and initrd are
Xen's modules.

:class:`MultibootXen` describes one such boot, and three writers put it in a loader's words:

* :func:`syslinux_config` for syslinux's ``mboot.c32`` (BIOS disk images, hddimg and iso)::

      LABEL xen
        KERNEL mboot.c32
        APPEND /xen.gz <Xen's command line> --- /bzImage <dom0's command line> --- /initrd

* :func:`grub_config` for GRUB 2's ``multiboot2`` and ``module2`` commands (EFI disk images);
* :meth:`MultibootXen.qemu_args` for QEMU's own multiboot loader (``-kernel`` Xen, ``-append``
  Xen's command line, ``-initrd`` the modules): a boot without a disk image or boot loader.

mboot.c32 and QEMU put a module's file name in front of its command line and Xen drops that first
word; GRUB 2 passes the arguments alone, which Xen knows: each writer uses its loader's form, so
dom0 gets the same command line from all three.

:func:`image_boot_config` is what the layer's class calls: the config of a disk image, from the
``QB_XEN_*`` variables and the names the image's boot partition gives the files.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import BootConfigError
from .qemuopts import escape, split_option

__all__ = [
    "LIVE_INITRD",
    "LOADERS",
    "MBOOT_SEPARATOR",
    "XEN_FILE",
    "MultibootXen",
    "SerialPort",
    "grub_config",
    "image_boot_config",
    "live_bootargs",
    "multiboot_modules",
    "parse_serial",
    "parse_timeout",
    "syslinux_config",
]

#: What mboot.c32 splits its arguments at: Xen, then each module with its command line.
MBOOT_SEPARATOR = "---"
#: Xen's name in a boot partition (meta-virtualization's bootimg-biosxen plugin installs it so;
#: the layer's class gives it the same name on EFI and live images).
XEN_FILE = "xen.gz"
#: The initrd of an hddimg or iso (image-live concatenates INITRD into this file).
LIVE_INITRD = "initrd"
#: The boot loaders :func:`image_boot_config` writes for.
LOADERS = ("syslinux", "grub")

#: Where each field of :class:`MultibootXen` comes from, for messages.
_SETTING = {
    "xen": "the Xen file",
    "xen_cmdline": "QB_XEN_CMDLINE",
    "kernel": "QB_XEN_DOM0_KERNEL",
    "kernel_cmdline": "QB_XEN_DOM0_BOOTARGS",
    "initrd": "QB_XEN_DOM0_INITRD",
    "label": "the menu label",
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: Characters GRUB's script lexer treats specially outside quotes: words holding one are quoted.
_GRUB_SPECIAL = re.compile(r"[$;|&<>{}()#*?\[\]~]")
#: Characters GRUB escapes with a backslash when it passes arguments on (grub_create_loader_cmdline),
#: so that Xen and Linux would not see what was written.
_GRUB_ESCAPED = ("'", '"', "\\")
_HEADER = "# Xen, with dom0's kernel as its first multiboot module (meta-xen-ref, xenboot.multiboot)."


@dataclass(frozen=True)
class SerialPort:
    """The boot loader's serial console: a PC UART (0 = COM1) at ``speed`` baud."""

    unit: int = 0
    speed: int = 115200


def parse_serial(text: str, key: str = "XEN_REF_BOOT_SERIAL") -> SerialPort | None:
    """``"0 115200"`` -> ``SerialPort(0, 115200)``; empty -> None (no serial console)."""
    words = text.split()
    if not words:
        return None
    if len(words) != 2 or not all(w.isdigit() for w in words) or int(words[0]) > 3:
        raise BootConfigError(f"{text!r} is not a serial port and speed",
                              "write the UART number (0 for COM1) and the baud rate, like \"0 115200\", "
                              "or leave it empty for no serial console", key=key)
    return SerialPort(int(words[0]), int(words[1]))


def parse_timeout(text: str, key: str = "XEN_REF_BOOT_TIMEOUT") -> int:
    """Seconds the boot menu waits, from ``text`` (0: boot at once)."""
    value = text.strip()
    if not value.isdigit() or int(value) > 3600:
        raise BootConfigError(f"{text!r} is not a number of seconds",
                              "write whole seconds from 0 (boot at once) to 3600", key=key)
    return int(value)


@dataclass(frozen=True)
class MultibootXen:
    """Xen and its modules as one boot loader sees them (paths on the boot medium or the host).

    ``initrd`` is optional (empty: no initrd).  Raises :class:`BootConfigError` naming the
    setting for a path with blanks, a line break in a command line or an unusable label.
    """

    xen: str
    xen_cmdline: str
    kernel: str
    kernel_cmdline: str
    initrd: str = ""
    label: str = "xen"

    def __post_init__(self) -> None:
        for field in ("xen", "kernel", "initrd"):
            path = getattr(self, field)
            if (path or field != "initrd") and (not path or re.search(r"\s", path) or _CONTROL.search(path)):
                raise BootConfigError(f"file name {path!r} is empty or holds blanks or control characters",
                                      "name a file without blanks", key=_SETTING[field])
        for field in ("xen_cmdline", "kernel_cmdline"):
            if _CONTROL.search(getattr(self, field).replace("\t", " ")):
                raise BootConfigError("the command line holds a line break or control character",
                                      "write it on one line", key=_SETTING[field])
        if not _LABEL.fullmatch(self.label):
            raise BootConfigError(f"label {self.label!r} is not a plain word",
                                  "use letters, digits, '.', '_' and '-'", key=_SETTING["label"])

    def modules(self) -> list[tuple[str, str]]:
        """``(path, command line)`` of each module: dom0's kernel, then the initrd if any."""
        found = [(self.kernel, " ".join(self.kernel_cmdline.split()))]
        if self.initrd:
            found.append((self.initrd, ""))
        return found

    def qemu_args(self) -> list[str]:
        """QEMU's multiboot boot: ``-kernel`` Xen, ``-append`` its command line, ``-initrd`` modules.

        ``xen`` must be the uncompressed multiboot image (QEMU does not unpack ``xen.gz``).
        Commas in a module's path or command line are doubled: QEMU separates modules at commas.
        """
        modules = ",".join(escape(f"{path} {cmdline}".strip()) for path, cmdline in self.modules())
        return ["-kernel", self.xen, "-append", " ".join(self.xen_cmdline.split()), "-initrd", modules]


def _check_mboot(boot: MultibootXen) -> None:
    for field in ("xen_cmdline", "kernel_cmdline"):
        if MBOOT_SEPARATOR in getattr(boot, field).split():
            raise BootConfigError(f"the command line holds the word {MBOOT_SEPARATOR!r}, which syslinux's "
                                  "mboot.c32 reads as the start of the next module",
                                  f"remove the word {MBOOT_SEPARATOR!r}", key=_SETTING[field])


def syslinux_entry(boot: MultibootXen) -> str:
    """The ``LABEL`` block that starts Xen through ``mboot.c32`` (found next to the config)."""
    _check_mboot(boot)
    parts = [boot.xen, *boot.xen_cmdline.split()]
    for path, cmdline in boot.modules():
        parts += [MBOOT_SEPARATOR, path, *cmdline.split()]
    return f"LABEL {boot.label}\n  KERNEL mboot.c32\n  APPEND {' '.join(parts)}\n"


def syslinux_config(boot: MultibootXen, *, timeout: int = 1,
                    serial: SerialPort | None = SerialPort()) -> str:
    """A whole ``syslinux.cfg`` that boots ``boot`` after ``timeout`` seconds (0: at once)."""
    lines = [_HEADER]
    if serial is not None:
        lines.append(f"SERIAL {serial.unit} {serial.speed}")
    lines += [f"DEFAULT {boot.label}", f"PROMPT {1 if timeout else 0}", f"TIMEOUT {timeout * 10}", ""]
    return "\n".join(lines) + "\n" + syslinux_entry(boot)


def _grub_words(text: str, key: str) -> str:
    words = []
    for word in text.split():
        if any(c in word for c in _GRUB_ESCAPED):
            raise BootConfigError(f"{word!r} holds a quote or backslash, which GRUB passes on escaped",
                                  "write the option without quotes and backslashes", key=key)
        words.append(f"'{word}'" if _GRUB_SPECIAL.search(word) else word)
    return " ".join(words)


def grub_entry(boot: MultibootXen) -> str:
    """The ``menuentry`` that starts Xen with GRUB 2's ``multiboot2`` and ``module2``."""
    lines = [f"menuentry '{boot.label}' {{",
             f"\tmultiboot2 {' '.join([boot.xen, _grub_words(boot.xen_cmdline, _SETTING['xen_cmdline'])]).rstrip()}"]
    for path, cmdline in boot.modules():
        lines.append(f"\tmodule2 {' '.join([path, _grub_words(cmdline, _SETTING['kernel_cmdline'])]).rstrip()}")
    return "\n".join(lines) + "\n}\n"


def grub_config(boot: MultibootXen, *, timeout: int = 1, serial: SerialPort | None = SerialPort()) -> str:
    """A whole ``grub.cfg`` that boots ``boot`` after ``timeout`` seconds (0: at once)."""
    lines = [_HEADER]
    if serial is not None:
        lines += [f"serial --unit={serial.unit} --speed={serial.speed} --word=8 --parity=no --stop=1",
                  "terminal_input serial console", "terminal_output serial console"]
    lines += ["set default=0", f"set timeout={timeout}", ""]
    return "\n".join(lines) + "\n" + grub_entry(boot)


def live_bootargs(bootargs: str, live_root: str = "root=/dev/ram0", label: str = "boot") -> str:
    """dom0's command line on a live image (hddimg, iso): its root comes from the live initrd.

    oe-core's live initrd finds the boot medium by ``LABEL=<label>`` and mounts ``rootfs.img``
    from it, so ``root=``, ``rootfstype=`` and ``rootwait`` of ``bootargs`` give way to
    ``live_root`` (image-live's ``ROOT_LIVE``) and the label.
    """
    keep = [w for w in bootargs.split() if not w.startswith(("root=", "rootfstype=")) and w != "rootwait"]
    return " ".join([*keep, *live_root.split(), f"LABEL={label}"])


def image_boot_config(values: Mapping[str, str], loader: str, *, live: bool = False) -> str:
    """The boot-loader config of an x86 disk image, from the layer class's variables.

    ``values`` holds ``QB_XEN_CMDLINE``, ``QB_XEN_DOM0_BOOTARGS``, ``QB_XEN_DOM0_INITRD``,
    ``KERNEL_IMAGETYPE``, ``XEN_REF_BOOT_TIMEOUT`` and ``XEN_REF_BOOT_SERIAL``, and for a
    ``live`` image (hddimg, iso) ``ROOT_LIVE`` and ``INITRD``.  The boot partition holds Xen as
    ``/xen.gz``, dom0's kernel under its ``KERNEL_IMAGETYPE`` name and the initrd under its file
    name (``/initrd`` on live images).  ``loader`` is ``syslinux`` or ``grub``.
    """
    def value(key: str) -> str:
        return (values.get(key) or "").strip()

    if loader not in LOADERS:
        raise BootConfigError(f"boot loader {loader!r}", f"use one of {', '.join(LOADERS)}", key="loader")
    if not value("KERNEL_IMAGETYPE"):
        raise BootConfigError("empty: the boot partition's dom0 kernel has no name",
                              "set KERNEL_IMAGETYPE (the machine does)", key="KERNEL_IMAGETYPE")
    cmdline, initrd = value("QB_XEN_DOM0_BOOTARGS"), posixpath.basename(value("QB_XEN_DOM0_INITRD"))
    if live:
        cmdline = live_bootargs(cmdline, value("ROOT_LIVE") or "root=/dev/ram0")
        initrd = LIVE_INITRD if value("INITRD") else ""
    boot = MultibootXen(f"/{XEN_FILE}", value("QB_XEN_CMDLINE"), f"/{value('KERNEL_IMAGETYPE')}", cmdline,
                        f"/{initrd}" if initrd else "")
    timeout = parse_timeout(value("XEN_REF_BOOT_TIMEOUT") or "0")
    serial = parse_serial(value("XEN_REF_BOOT_SERIAL"))
    write = syslinux_config if loader == "syslinux" else grub_config
    return write(boot, timeout=timeout, serial=serial)


def multiboot_modules(args: list[str]) -> list[tuple[str, str]]:
    """``(path, command line)`` of each multiboot module named by ``-initrd`` in an argv fragment.

    QEMU separates modules at single commas (``,,`` is a comma inside one) and takes the first
    word of each as its file; the reverse of :meth:`MultibootXen.qemu_args`.
    """
    found: list[tuple[str, str]] = []
    for option, value in zip(args, args[1:]):
        if option != "-initrd":
            continue
        for module in split_option(value):
            path, _, cmdline = module.strip().partition(" ")
            if path:
                found.append((path, cmdline.strip()))
    return found
