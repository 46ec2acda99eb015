"""Build the QEMU argv (``qemu-system-aarch64``, ``qemu-system-x86_64``) for a :class:`~xenqemu.target.Target`.

The harness never calls runqemu: it builds the command line itself so that it controls the
console, the monitor and the network forwards:

* ``-kernel`` is Xen and ``-append`` Xen's command line; on Arm the dom0 kernel (and initrd) are
  loaded by ``-device guest-loader`` (QEMU adds the ``/chosen/module@`` nodes to its own device
  tree), on x86 they are multiboot modules of ``-initrd`` (in the target's extra arguments);
* the root filesystem is a ``virtio-blk-device`` (virtio-mmio, handed by Xen to dom0) with
  ``snapshot=on`` so the base image is never modified (for a qemuboot.conf with ``QB_ROOTFS_OPT``
  the global ``-snapshot`` does the same);
* user-mode network with port forwards only on 127.0.0.1;
* ``-display none -no-reboot -S``: no window, exit on reset, start paused;
* QMP on a unix socket and the first serial port (the PL011, or COM1 on x86, that Xen drives, so
  Xen's and dom0's console) on a unix socket chardev that also writes a raw log file.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .target import Target, TargetError

__all__ = ["RunPaths", "build_argv", "format_argv", "parse_hostfwd"]


@dataclass(frozen=True)
class RunPaths:
    """Files of one run: the run directory and the sockets/logs QEMU is told about."""

    run_dir: Path
    qmp_socket: Path
    serial_socket: Path
    serial_log: Path

    @classmethod
    def in_dir(cls, run_dir: Path, socket_dir: Path | None = None) -> RunPaths:
        """The standard layout; sockets go to ``socket_dir`` when given (short path needed)."""
        sockets = socket_dir or run_dir
        return cls(run_dir=run_dir, qmp_socket=sockets / "qmp.sock",
                   serial_socket=sockets / "serial.sock", serial_log=run_dir / "serial.log")


_HOSTFWD = re.compile(r"^(?:(tcp|udp):)?(?:([\d.]*):)?(\d+)(?:-|:)(?:([\d.]*):)?(\d+)$")


def parse_hostfwd(spec: str) -> str:
    """Turn ``2222:22``, ``tcp::2222-:22`` or ``tcp:127.0.0.1:2222-:22`` into a loopback hostfwd.

    A forward on any host address other than 127.0.0.1 is refused (``ValueError``): a test VM must
    not be reachable from the network.
    """
    m = _HOSTFWD.match(spec.strip())
    if not m:
        raise ValueError(f"bad port forward {spec!r}: write HOSTPORT:GUESTPORT or tcp::HOSTPORT-:GUESTPORT")
    proto, host_addr, host_port, guest_addr, guest_port = m.groups()
    if host_addr not in (None, "", "127.0.0.1"):
        raise ValueError(f"port forward {spec!r} listens on {host_addr}: only 127.0.0.1 is allowed")
    return f"hostfwd={proto or 'tcp'}:127.0.0.1:{host_port}-{guest_addr or ''}:{guest_port}"


def _has_option(args: Sequence[str], option: str) -> bool:
    return option in args


def build_argv(target: Target, paths: RunPaths, *, snapshot: bool = True,
               hostfwd: Iterable[str] = (), extra_args: Sequence[str] = (),
               xen_cmdline_extra: str = "", qemu_binary: str | None = None,
               rootfs_overlay: Path | None = None, loadvm: str | None = None) -> list[str]:
    """Return the complete argv (binary first) to start ``target`` paused under the harness.

    ``xen_cmdline_extra`` is appended to ``-append`` (runqemu's ``bootparams``); ``extra_args`` go
    last (runqemu's ``qemuparams``).  ``rootfs_overlay`` (a qcow2 file whose backing file is the
    root filesystem) replaces the root filesystem on the drive, opened read-write: ``savevm``
    needs a drive it can write its snapshot into, so ``snapshot`` must then be False.
    ``loadvm`` restores that internal snapshot at start-up (``-loadvm``).  Raises
    :class:`~xenqemu.target.TargetError` if ``extra_args`` try to take over what the harness owns
    (serial, monitor, QMP, display), ``ValueError`` for an overlay combined with ``snapshot``.
    """
    if rootfs_overlay is not None and snapshot:
        raise ValueError("a rootfs overlay holds the VM snapshot and must be writable: pass snapshot=False")
    if loadvm is not None and rootfs_overlay is None:
        raise ValueError("loadvm needs the qcow2 overlay that holds the snapshot (rootfs_overlay=...)")
    for owned in ("-serial", "-qmp", "-monitor", "-display", "-nographic", "-chardev", "-loadvm"):
        if owned in extra_args:
            raise TargetError(target.source, "extra_args", f"{owned} is owned by the harness",
                              "drop it; the console is on serial.sock and QMP on qmp.sock in the run dir")
    argv: list[str] = [qemu_binary or target.qemu_binary]
    argv += target.machine_args + target.cpu_args + target.smp_args
    argv += ["-m", str(target.memory_mib)]
    argv += _boot_args(target, xen_cmdline_extra)
    argv += _rootfs_args(target, snapshot, rootfs_overlay)
    if target.network:
        netdev = f"user,id={target.netdev_id}"
        for fwd in hostfwd:
            netdev += "," + parse_hostfwd(fwd)
        argv += ["-netdev", netdev] + list(target.network_device_args)
    argv += list(target.rng_args) + list(target.extra_args)
    argv += _harness_args(paths)
    if loadvm is not None:
        argv += ["-loadvm", loadvm]
    return argv + list(extra_args)


def _boot_args(target: Target, xen_cmdline_extra: str) -> list[str]:
    """``-kernel``/``-append`` (Xen and its command line), ``-dtb``, ``-bios``, dom0's guest-loaders."""
    argv: list[str] = []
    if target.kernel is not None:
        argv += ["-kernel", str(target.kernel)]
        cmdline = " ".join(p for p in (target.kernel_cmdline, xen_cmdline_extra) if p.strip())
        if cmdline:
            argv += ["-append", cmdline]
    if target.dtb is not None:
        argv += ["-dtb", str(target.dtb)]
    if target.bios is not None:
        argv += ["-bios", str(target.bios)]
    if target.dom0 is not None:
        for loader in target.dom0.loaders():
            argv += ["-device", loader.device()]
    return argv


def _rootfs_args(target: Target, snapshot: bool, rootfs_overlay: Path | None) -> list[str]:
    """The root filesystem's drive: QB_ROOTFS_OPT's, or the harness's own virtio-mmio one."""
    if target.rootfs is None:
        if rootfs_overlay is not None:
            raise ValueError(f"{target.source}: the target has no root filesystem to put an overlay on")
        return []
    rootfs = str(rootfs_overlay if rootfs_overlay is not None else target.rootfs)
    if target.rootfs_args:
        argv = [_overlay_drive(a.replace("@ROOTFS@", rootfs)) if rootfs_overlay is not None and
                "@ROOTFS@" in a else a.replace("@ROOTFS@", rootfs) for a in target.rootfs_args]
        return argv + (["-snapshot"] if snapshot else [])
    fmt = "qcow2" if rootfs_overlay is not None else target.rootfs_format
    drive = f"if=none,id=rootfs,file={rootfs},format={fmt}"
    if snapshot:
        drive += ",snapshot=on"
    return ["-drive", drive, "-device", "virtio-blk-device,drive=rootfs"]


def _harness_args(paths: RunPaths) -> list[str]:
    """What the harness owns: no display, exit on reset, paused start, QMP and the console sockets."""
    return [
        "-display", "none",
        "-no-reboot",
        "-S",
        "-monitor", "none",
        "-qmp", f"unix:{paths.qmp_socket},server=on,wait=off",
        "-chardev", f"socket,id=console0,path={paths.serial_socket},server=on,wait=off,logfile={paths.serial_log}",
        "-serial", "chardev:console0",
    ]


def _overlay_drive(option: str) -> str:
    """A ``-drive`` value from QB_ROOTFS_OPT with its format switched to the qcow2 overlay's."""
    parts = [p for p in option.split(",") if not p.startswith("format=")]
    return ",".join(parts + ["format=qcow2"])


def format_argv(argv: Sequence[str]) -> str:
    """A copy-pasteable shell rendering of ``argv`` (one option per line)."""
    out: list[str] = [shlex.quote(argv[0])]
    i = 1
    while i < len(argv):
        if argv[i].startswith("-") and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            out.append(f"{shlex.quote(argv[i])} {shlex.quote(argv[i + 1])}")
            i += 2
        else:
            out.append(shlex.quote(argv[i]))
            i += 1
    return " \\\n    ".join(out)
