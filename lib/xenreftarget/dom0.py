"""dom0's root file system: Debian's packages, busybox, Xen's tools and the systemd configuration.

dom0 runs systemd from Debian's packages (the dependency closure that :mod:`xenreftarget.apt`
resolves), with the unit files of :mod:`xenreftarget.units`. What Debian's maintainer scripts
would do at installation is done here, without running anything from the packages: the accounts
from sysusers.d, ``systemctl enable`` links, a machine id, and the "updated" stamps that keep
first-boot work (ldconfig, hwdb, sysusers, journal catalog) from running at every boot of a
read-only-image snapshot. Login stays busybox's (root, empty password), through systemd's
serial getty on hvc0.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from . import units
from .assemble import (
    KernelTree,
    base_config,
    base_layout,
    install_busybox,
    install_modules,
    install_package_tree,
    write_executable,
)
from .packages import Distro

#: Modules dom0 loads at start-up: Xen devices, backends, loop for file: disks, the bridge, the NIC.
DOM0_MODULES: tuple[str, ...] = ("virtio_mmio", "xen-evtchn", "xen-gntdev", "xen-gntalloc",
                                 "xen-privcmd", "xenfs", "xen-blkback", "xen-netback", "loop",
                                 "bridge", "virtio_net")
#: Units we enable (and, through their ``Also=``, what comes with them).
ENABLED_UNITS: tuple[str, ...] = ("busybox-applets.service", "xenstored.service",
                                  "xen-init-dom0.service", "xenconsoled.service",
                                  "xendomains.service", "systemd-networkd.service")
#: Every systemd helper links the 5 MB libsystemd-shared: under TCG each start costs 0.3-1.3 s
#: of CPU (``systemd-escape`` alone: 1.3 s on the loaded build machine). dom0 therefore masks the
#: units and generators that have nothing to do in it, each with the reason; conditions that
#: fail cost nothing and are left alone. Measured: QEMU CPU time to dom0's shell 48.9 s with
#: Debian's defaults, 25.0 s with these masks (busybox init: 12.2 s; docs/reference-target.md).
MASKED_UNITS: Mapping[str, str] = {
    "getty-static.service": "Debian's gettys on tty2-6 without logind; dom0's console is hvc0",
    "dev-hugepages.mount": "no huge pages used in dom0",
    "dev-mqueue.mount": "no POSIX message queues used in dom0",
    "sys-kernel-debug.mount": "debugfs: a debugging aid, mount it by hand when needed",
    "sys-kernel-tracing.mount": "tracefs: a debugging aid, mount it by hand when needed",
    "sys-kernel-config.mount": "configfs: nothing in dom0 uses it",
    "sys-fs-fuse-connections.mount": "no FUSE in dom0",
    "proc-sys-fs-binfmt_misc.automount": "no foreign binaries run in dom0",
    "systemd-repart.service": "no repart.d; its Wants= start modprobe@loop/dm_mod anyway",
    "systemd-logind.service": "needs D-Bus, which dom0 lacks (its condition skips it, but its "
                              "Wants= start modprobe@drm); login is busybox's, without sessions",
    "systemd-user-sessions.service": "only removes /run/nologin (masked below), which busybox's "
                                     "login ignores; it orders the console login after the network",
    "systemd-update-utmp.service": "utmp/wtmp records that nothing in dom0 reads",
    "systemd-update-utmp-runlevel.service": "utmp/wtmp records that nothing in dom0 reads",
    "systemd-random-seed.service": "the image is booted from a pristine snapshot: a saved seed "
                                   "never comes back",
    "systemd-journal-flush.service": "the journal is volatile (no /var/log/journal)",
    "systemd-network-generator.service": "no ip= on dom0's kernel command line",
    "kmod-static-nodes.service": "devtmpfs and modules-load.d provide the nodes dom0 uses",
    "systemd-tmpfiles-setup-dev.service": "static nodes and sound permissions; dom0 has neither "
                                          "(PID 1 itself makes /dev/fd and /dev/std*)",
    "systemd-remount-fs.service": "/etc/fstab is empty; the initrd mounts / read-write",
    "systemd-sysctl.service": "Debian's systemd ships only pid_max in sysctl.d",
    "ldconfig.service": "no ldconfig in dom0 (libc-bin is not installed; the libraries are in the "
                        "default paths); systemd 257 runs it whenever /etc/ld.so.cache is missing",
    "systemd-networkd-persistent-storage.service": "systemd 257: networkd's state stays in /run "
                                                   "(every boot starts from the pristine image)",
}
#: Generators (each one exec'd by PID 1 at every start) that have nothing to generate in dom0.
MASKED_GENERATORS: Mapping[str, str] = {
    "systemd-cryptsetup-generator": "no encrypted volumes",
    "systemd-integritysetup-generator": "no dm-integrity volumes",
    "systemd-veritysetup-generator": "no dm-verity volumes",
    "systemd-gpt-auto-generator": "no GPT disk (dom0's root is a raw ext4 image)",
    "systemd-hibernate-resume-generator": "no hibernation",
    "systemd-fstab-generator": "/etc/fstab is empty; the initrd mounts root",
    "systemd-getty-generator": "serial-getty@hvc0 is enabled explicitly instead",
    "systemd-sysv-generator": "no sysvinit scripts (Debian's /etc/init.d is not installed)",
    "systemd-rc-local-generator": "no /etc/rc.local",
    "systemd-system-update-generator": "no offline updates",
    "systemd-run-generator": "no systemd.run= on the kernel command line",
    "systemd-debug-generator": "no systemd.mask=/debug-shell on the kernel command line",
}
#: tmpfiles.d snippets replaced by nothing (a link to /dev/null in /etc/tmpfiles.d).
MASKED_TMPFILES: Mapping[str, str] = {
    "systemd-nologin.conf": "/run/nologin would stay forever with systemd-user-sessions masked",
}
#: The console getty (enabled like ``systemctl enable serial-getty@hvc0.service``).
CONSOLE = "hvc0"
#: Groups udev's rules name that no sysusers.d file declares (Debian's udev adds them itself).
UDEV_GROUPS: tuple[str, ...] = ("input", "kvm", "render", "sgx")
#: How long xendomains waits for the guests at poweroff before it destroys them.
XENDOMAINS_STOP_MAXWAIT_S = 120


def machine_id(hostname: str) -> str:
    """A fixed machine id (every boot of the image is the same machine; no first-boot setup)."""
    return hashlib.sha256(f"meta-xen-ref dom0 {hostname}".encode()).hexdigest()[:32]


def dom0_tree(packages: Mapping[str, Path], kernel: KernelTree, root: Path, distro: Distro,
              hostname: str = "qemuarm64", extra_modules: tuple[str, ...] = ()) -> list[str]:
    """Lay out dom0's root file system (before the guests are bundled into it).

    ``extra_modules`` are loaded before :data:`DOM0_MODULES` (the PCI transport on x86).

    Returns the kernel modules' load order (paths relative to ``lib/modules/<release>``).
    """
    base_layout(root)
    for name, unpacked in packages.items():
        if name not in (distro.hypervisor_package, "busybox-static"):
            install_package_tree(name, unpacked, root)
    install_busybox(packages["busybox-static"], root, init=False)
    if (root / "usr/lib64").is_dir():
        # x86-64's ELF interpreter is /lib64/ld-linux-x86-64.so.2 (merged /usr: usr/lib64)
        _symlink("usr/lib64", root / "lib64")
    base_config(root, hostname, init="systemd", origin=distro.label)
    link_xen_tools(root, distro)
    for folder in ("var/lib/xen/images", "etc/xen/auto", "var/log/xen"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    order = install_modules(kernel, (*extra_modules, *DOM0_MODULES), root)
    systemd_config(root, distro, hostname, extra_modules)
    mark_updated(root)
    return order


def link_xen_tools(root: Path, distro: Distro) -> None:
    """``/usr/sbin/<tool>`` straight to Debian's Xen tools (bypassing the version-detecting wrapper)."""
    xen_bin = root / distro.xen_bin_dir.lstrip("/")
    for tool in sorted(p.name for p in xen_bin.iterdir()):
        _symlink(f"../lib/xen-{distro.xen_version}/bin/{tool}", root / "usr/sbin" / tool)


def _symlink(target: str, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(target, link)


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(text)


def unit_files(distro: Distro, extra_modules: tuple[str, ...] = ()) -> dict[str, str]:
    """Our unit files and configuration, keyed by their path in dom0."""
    unit_dir, etc = units.UNIT_DIR, units.ETC_UNIT_DIR
    files = {
        f"{unit_dir}/proc-xen.mount": units.proc_xen_mount(),
        f"{unit_dir}/xenstored.service": units.xenstored_service(distro.xen_bin_dir),
        f"{unit_dir}/xen-init-dom0.service": units.xen_init_dom0_service(distro.xen_bin_dir),
        f"{unit_dir}/xenconsoled.service": units.xenconsoled_service(distro.xen_bin_dir),
        f"{unit_dir}/xendomains.service": units.xendomains_service(XENDOMAINS_STOP_MAXWAIT_S),
        f"{unit_dir}/busybox-applets.service": units.busybox_applets_service(),
        f"{etc}/serial-getty@{CONSOLE}.service.d/xen-ref.conf": units.getty_dropin(),
        f"{etc}/systemd-udev-trigger.service.d/xen-ref.conf": units.udev_trigger_dropin(CONSOLE),
        "/etc/systemd/system.conf.d/xen-ref.conf": units.system_conf_dropin(),
        "/usr/lib/tmpfiles.d/xen-ref.conf": units.tmpfiles_conf(),
        "/etc/modules-load.d/xen-ref.conf": units.modules_load_conf((*extra_modules, *DOM0_MODULES)),
        units.XENDOMAINS_DEFAULTS: units.xendomains_defaults(XENDOMAINS_STOP_MAXWAIT_S),
    }
    for name, text in units.networkd_files().items():
        files[f"/etc/systemd/network/{name}"] = text
    return files


def systemd_config(root: Path, distro: Distro, hostname: str, extra_modules: tuple[str, ...] = ()) -> None:
    """Write our units and configuration, enable and mask units, write accounts and machine id."""
    for rel, text in unit_files(distro, extra_modules).items():
        _write(root, rel, text)
    write_executable(root / units.XENDOMAINS.lstrip("/"), units.xendomains_script())
    write_executable(root / units.XENSTORE_READY.lstrip("/"), units.xenstore_ready_script())
    _symlink(os.path.relpath(units.XENDOMAINS, "/usr/sbin"), root / "usr/sbin/xendomains")
    unit_dir = root / units.UNIT_DIR.lstrip("/")
    available = {p.name: p.read_text() for p in unit_dir.iterdir() if p.is_file()}
    for link, target in units.enable_closure(ENABLED_UNITS, available):
        _symlink(target, root / link.lstrip("/"))
    etc_units = root / units.ETC_UNIT_DIR.lstrip("/")
    for unit in MASKED_UNITS:
        _symlink("/dev/null", etc_units / unit)
    for generator in MASKED_GENERATORS:
        _symlink("/dev/null", root / "etc/systemd/system-generators" / generator)
    for snippet in MASKED_TMPFILES:
        _symlink("/dev/null", root / "etc/tmpfiles.d" / snippet)
    _symlink(f"{units.UNIT_DIR}/serial-getty@.service",
             etc_units / "getty.target.wants" / f"serial-getty@{CONSOLE}.service")
    sysusers = sorted((root / "usr/lib/sysusers.d").glob("*.conf"))
    accounts = units.accounts_from_sysusers((p.read_text() for p in sysusers), UDEV_GROUPS)
    _write(root, "/etc/passwd", accounts.passwd)
    _write(root, "/etc/group", accounts.group)
    _write(root, "/etc/machine-id", machine_id(hostname) + "\n")
    profile = root / "etc/profile"
    profile.write_text(profile.read_text() + units.profile_aliases())
    _write(root, "/etc/nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\n"
                                       "hosts: files dns\nnetworks: files\n")


def mark_updated(root: Path) -> None:
    """Stamp /etc and /var as up to date with /usr (``ConditionNeedsUpdate=`` units skip).

    Otherwise every boot of the pristine image would run ldconfig, the hwdb and catalog
    updates and systemd-sysusers again (a snapshot boot never keeps their results).
    """
    usr_mtime = int((root / "usr").stat().st_mtime)
    for folder in ("etc", "var"):
        stamp = root / folder / ".updated"
        stamp.write_text(f"# {folder} matches /usr as built by xenreftarget\n"
                         f"TIMESTAMP_NSEC={(usr_mtime + 1) * 10**9}\n")
        os.utime(stamp, (usr_mtime + 1, usr_mtime + 1))
