"""Build the reference Xen target into a cache folder, only when its inputs changed.

Stand-in notice: this target replaces the bitbake-built ``xen-image-minimal`` and
``xen-guest-image-minimal`` (a full build takes hours and needs the internet) with images
assembled from Debian's packages (bookworm arm64 with Xen 4.17 by default, trixie arm64 with
Xen 4.20 on request; the suite and architecture are :class:`xenreftarget.packages.Distro`). Everything after the build is real: the Xen
hypervisor, dom0's kernel, systemd and ``xl`` toolstack, the guests, and the bundling, which
goes through :func:`xenbundle.bundle_guests`, the function the host image's ``do_rootfs`` hook
calls.

Layout of the cache folder::

    <cache>/debs/             downloaded .deb files (kept between builds, verified by checksum)
    <cache>/apt/<suite>-<arch>/  the private apt state (lists, cache, sources derived from the machine's)
    <cache>/builds/<id>/      one finished build: a deploy-like folder (see docs/reference-target.md)
    <cache>/target            symlink to the current build, swapped atomically
    <cache>/lock              serialises concurrent builds
    <cache>/<suite>-<arch>/   builds/, target and lock of another distribution than the
                              default (bookworm/arm64), e.g. ``trixie-arm64``: each suite
                              keeps its own target, building one never replaces the other's

A build happens in ``<cache>/builds/.tmp-*`` and becomes visible only by the atomic replacement
of the ``target`` symlink, so an interrupted build leaves no half-written target behind.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from xenboot import XenHostBoot, write_qemuboot

from . import assemble, dom0, dom0less, stamp
from .apt import PrivateApt
from .errors import ReferenceTargetError
from .initscripts import SHUTDOWN_MARKER
from .machines import MACHINES, GuestSpec, HostBoot, ReferenceMachine, machine_for
from .packages import (
    Distro,
    PackageError,
    PackageRecord,
    extract_deb,
    missing_host_tools,
)

Log = Callable[[str], None]

#: The default (arm64) reference machine; :data:`xenreftarget.machines.MACHINES` has the others.
ARM64 = MACHINES["arm64"]
MACHINE = ARM64.machine
XEN_BINARY = ARM64.xen_binary
KERNEL = ARM64.kernel
INITRD = ARM64.initrd
HOST_IMAGE_LINK_NAME = ARM64.host_image_link_name
HOST_ROOTFS = ARM64.host_rootfs
#: The name the project's contract uses for the host's qemuboot.conf.
QEMUBOOT_CONF = ARM64.qemuboot_conf
#: The name oe-core writes (``${IMAGE_LINK_NAME}.qemuboot.conf``), a symlink to the former.
QEMUBOOT_CONF_LINK = ARM64.qemuboot_conf_link
GUEST_DISK_BYTES = 64 << 20
GUEST_MEMORY_MB = 128
GUEST_EXTRA = "console=hvc0 root=/dev/xvda rw quiet"
#: How QEMU boots the reference target: the qemuboot.conf contract's defaults (xenboot) except
#: for a smaller machine, Debian's kernel with its initrd, and a quiet boot.
REFERENCE_BOOT = ARM64.boot
#: Xen 4.18 made INFO the level of a printk without one ("Xen version ...", "*** Serial input
#: to DOM0", which the harness's boot phases wait for): ``loglvl=warning`` hides them on 4.20.
#: From 4.18 on the reference target logs at Xen's default, ``loglvl=info``.
_QUIET_LOGLVL_BEFORE = (4, 18)


def reference_boot(distro: Distro) -> HostBoot:
    """How QEMU boots the reference target of ``distro``: its machine's boot, but Xen's log level."""
    boot = machine_for(distro.arch).boot
    major, minor = (int(part) for part in distro.xen_version.split("."))
    if (major, minor) < _QUIET_LOGLVL_BEFORE:
        return boot
    extra = boot.xen.cmdline_extra.replace("loglvl=warning ", "loglvl=info ")
    return replace(boot, xen=replace(boot.xen, cmdline_extra=extra))


class BuildError(ReferenceTargetError):
    """The target could not be built; the message says which step failed and what to do."""


#: The arm64 target's guests: one per bundling form, each with its own disk file and domain name,
#: and one that starts at boot (the others are created by the lifecycle check with ``xl create -c``).
GUESTS: tuple[GuestSpec, ...] = ARM64.guests


def all_guests(machine: ReferenceMachine = ARM64) -> tuple[GuestSpec, ...]:
    """Every guest of ``machine``'s target: its own and those of meta-virtualization's forms
    (:mod:`xenreftarget.compatguests`) where the machine has them."""
    from .compatguests import COMPAT_GUESTS

    return machine.guests + (COMPAT_GUESTS if machine.compat_guests else ())


@dataclass
class ReferenceTarget:
    """A finished build: where its files are and which guests dom0 carries."""

    deploy_dir: Path
    qemuboot_conf: Path
    host_rootfs: Path
    guests: list[dict[str, Any]] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)
    rebuilt: bool = False


def default_cache_dir() -> Path:
    """``$XEN_REF_CACHE``, else ``${XDG_CACHE_HOME:-~/.cache}/meta-xen-ref/reftarget``."""
    explicit = os.environ.get("XEN_REF_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "meta-xen-ref" / "reftarget"


def _lib_dir() -> Path:
    return Path(__file__).resolve().parent.parent


def source_folders() -> list[Path]:
    """The source folders whose content is part of the build key (builder, bundling engine, boot)."""
    return [_lib_dir() / "xenreftarget", _lib_dir() / "xenbundle", _lib_dir() / "xenboot"]


def deploy_config_text(spec: GuestSpec, comment: str, machine: ReferenceMachine = ARM64) -> str:
    """A guest config as it would lie in DEPLOY_DIR_IMAGE: paths relative to that folder."""
    return (
        f"# {comment}\n"
        f'name = "{spec.name}"\n'
        f'type = "{spec.type or "pvh"}"\n'
        f"memory = {GUEST_MEMORY_MB}\n"
        "vcpus = 1\n"
        f'kernel = "{machine.kernel}"\n'
        "# Debian's kernel has ext4 and xen-blkfront as modules: the initrd loads them.\n"
        f'ramdisk = "{machine.initrd}"\n'
        f'extra = "{GUEST_EXTRA}"\n'
        f"disk = [ 'file:{spec.disk},xvda,rw' ]\n"
        "vif = [ 'bridge=xenbr0' ]\n"
    )


def guest_settings(name: str, machine: ReferenceMachine = ARM64) -> Any:
    """Settings of a generated guest config (the bbclasses read them from ``XEN_GUEST_*``)."""
    from xenbundle import GuestSettings

    kind = next((g.type for g in machine.guests if g.name == name), None)
    return GuestSettings(name=name, memory=GUEST_MEMORY_MB, vcpus=1, extra=GUEST_EXTRA,
                         vif=("bridge=xenbr0",), ramdisk=machine.initrd, type=kind)


@contextmanager
def _locked(cache_dir: Path, log: Log) -> Iterator[None]:
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / "lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another build in {cache_dir} to finish")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class _Timer:
    def __init__(self, log: Log) -> None:
        self.log = log
        self.steps: dict[str, float] = {}
        self._start = time.monotonic()

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.log(f"[{name}] ...")
        start = time.monotonic()
        yield
        self.steps[name] = round(time.monotonic() - start, 2)
        self.log(f"[{name}] done in {self.steps[name]:.1f} s")

    @property
    def total(self) -> float:
        return round(time.monotonic() - self._start, 2)


_DEFAULT_DISTRO = Distro()


def distro_dir(cache_dir: Path, distro: Distro = _DEFAULT_DISTRO) -> Path:
    """The folder of ``distro``'s builds, ``target`` link and lock inside ``cache_dir``.

    The default distribution keeps the cache folder itself (the layout before there was a
    choice); any other gets ``<cache>/<suite>-<arch>``, so that each suite and architecture has
    its own target and building one never replaces another's.
    """
    return cache_dir if distro == _DEFAULT_DISTRO else cache_dir / f"{distro.suite}-{distro.arch}"


def _build_options(distro: Distro) -> str:
    """The ``xen-ref-target build`` options that choose ``distro``."""
    options = "" if distro.suite == _DEFAULT_DISTRO.suite else f" --debian {distro.suite}"
    return options + ("" if distro.arch == _DEFAULT_DISTRO.arch else f" --arch {distro.arch}")


def _machine(distro: Distro) -> ReferenceMachine:
    try:
        return machine_for(distro.arch)
    except PackageError as err:
        raise BuildError(str(err)) from None


def current_reference_target(cache_dir: Path | None = None,
                             distro: Distro = _DEFAULT_DISTRO) -> ReferenceTarget:
    """The current build of ``distro`` in ``cache_dir`` (no building); fails when there is none."""
    machine = _machine(distro)
    deploy = distro_dir(Path(cache_dir or default_cache_dir()), distro) / "target"
    manifest = stamp.read_manifest(deploy)
    if manifest is None:
        raise BuildError(f"no Debian {distro.suite}/{distro.arch} reference target in "
                         f"{deploy.parent}: run 'xen-ref-target build{_build_options(distro)}'")
    built = manifest.get("distro", {})
    if (built.get("suite", distro.suite), built.get("arch", distro.arch)) != (distro.suite, distro.arch):
        raise BuildError(f"{deploy} holds a Debian {built.get('suite')}/{built.get('arch')} build, "
                         f"not {distro.suite}/{distro.arch}: run 'xen-ref-target build"
                         f"{_build_options(distro)} --force'")
    return ReferenceTarget(deploy, deploy / machine.qemuboot_conf, deploy / machine.host_rootfs,
                           manifest.get("guests", []), manifest)


def _settings_for_key(boot: HostBoot, distro: Distro, machine: ReferenceMachine) -> dict[str, Any]:
    return {"boot": json.dumps(asdict(boot), sort_keys=True),
            "distro": f"{distro.suite}/{distro.arch}",
            "guests": json.dumps([asdict(g) for g in all_guests(machine)])}


def build_target(cache_dir: Path | None = None, force: bool = False, log: Log = print,
                 apt: PrivateApt | None = None, boot: HostBoot | None = None,
                 distro: Distro = _DEFAULT_DISTRO) -> ReferenceTarget:
    """Build (or reuse) the reference target of ``distro``'s architecture in ``cache_dir``.

    Reuses the current build when its key matches and its files are intact, unless ``force``.
    Packages come from a private apt state in ``<cache>/apt`` (see :mod:`xenreftarget.apt`);
    the build and its ``target`` link are in :func:`distro_dir`. ``boot`` defaults to
    :func:`reference_boot` of ``distro`` (its architecture's machine, :mod:`xenreftarget.machines`).
    """
    cache_dir = Path(cache_dir or default_cache_dir()).absolute()
    if any(ch.isspace() for ch in str(cache_dir)):
        raise BuildError(f"cache folder {cache_dir} contains white space, which QEMU options in "
                         "qemuboot.conf cannot carry; choose another with --cache or XEN_REF_CACHE")
    machine = _machine(distro)
    boot = boot or reference_boot(distro)
    missing = missing_host_tools(arch=distro.arch)
    if missing:
        raise BuildError("host tools missing:\n  " + "\n  ".join(missing))
    home = distro_dir(cache_dir, distro)
    with _locked(home, log):
        try:
            apt = apt or PrivateApt(cache_dir / "apt", distro, log=log)
            apt.ensure_lists()
            records = apt.resolve()
        except PackageError as err:
            raise BuildError(str(err)) from None
        inputs = stamp.build_inputs(records, stamp.source_digest(source_folders()),
                                    _settings_for_key(boot, distro, machine))
        key = stamp.input_key(inputs)
        current = home / "target"
        fresh, reason = stamp.check_current(current, key)
        if fresh and not force:
            log(f"reference target is up to date: {current.resolve()}")
            return current_reference_target(cache_dir, distro)
        old = stamp.read_manifest(current)
        if force:
            reason = "forced"
        elif old and reason == "inputs changed":
            reason = "; ".join(stamp.describe_changes(old.get("inputs", {}), inputs)[:8])
        log(f"building the {distro.label} reference target ({reason})")
        deploy = _build(cache_dir, records, inputs, key, boot, apt, log, distro, machine)
        _publish(home, deploy, log)
        target = current_reference_target(cache_dir, distro)
        target.rebuilt = True
        return target


def _build(cache_dir: Path, records: Sequence[PackageRecord], inputs: dict[str, Any], key: str,
           boot: HostBoot, apt: PrivateApt, log: Log, distro: Distro, machine: ReferenceMachine) -> Path:
    builds = distro_dir(cache_dir, distro) / "builds"
    builds.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=builds))
    try:
        deploy = tmp / "deploy"
        deploy.mkdir()
        timer = _Timer(log)
        with timer.step("download"):
            try:
                debs = apt.download(records, cache_dir / "debs")
            except PackageError as err:
                raise BuildError(str(err)) from None
        guests = _assemble(tmp / "work", deploy, records, debs, boot, timer, log, distro, machine)
        boot_values = boot.variables()
        if machine.dom0less and isinstance(boot, XenHostBoot):
            with timer.step("dom0less boot"):
                boot_values.update(dom0less.boot_variables(boot, deploy, tmp / "dtb"))
                write_qemuboot(deploy / dom0less.NO_DOM0_QEMUBOOT_CONF,
                               dom0less.no_dom0_variables(boot, deploy, tmp / "dtb-no-dom0"))
        with timer.step("qemuboot.conf"):
            write_qemuboot(deploy / machine.qemuboot_conf, boot_values)
            os.symlink(machine.qemuboot_conf, deploy / machine.qemuboot_conf_link)
        shutil.rmtree(tmp / "work", ignore_errors=True)
        manifest = {
            "key": key,
            "inputs": inputs,
            "files": stamp.file_records(deploy),
            "guests": guests,
            "autostart": [g["name"] for g in guests if g.get("autostart")],
            "dom0less": [{"name": dom0less.DOM0LESS_GUEST.name, "ramdisk": dom0less.DOM0LESS_GUEST.ramdisk,
                          "bootargs": dom0less.DOM0LESS_GUEST.bootargs}],
            "dom0_init": "systemd",
            "distro": {"suite": distro.suite, "arch": distro.arch, "xen": distro.xen_version},
            "machine": machine.machine,
            "shutdown_marker": SHUTDOWN_MARKER,
            "poweroff_ends_qemu": machine.poweroff_ends_qemu,
            "kernel_release": _kernel_release(records),
            "timings_s": dict(timer.steps, total=timer.total),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        stamp.write_manifest(deploy, manifest)
        final = builds / key[:16]
        if final.exists():
            shutil.rmtree(final)
        os.rename(deploy, final)
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _kernel_release(records: Sequence[PackageRecord]) -> str:
    kernel = [r.name for r in records if r.name.startswith("linux-image-")]
    return kernel[0][len("linux-image-"):] if kernel else ""


def _publish(home: Path, final: Path, log: Log) -> None:
    """Point ``<home>/target`` at ``final`` atomically, then drop the builds no longer used."""
    link = home / "target"
    tmp_link = home / f".target-{os.getpid()}"
    if tmp_link.is_symlink() or tmp_link.exists():
        tmp_link.unlink()
    os.symlink(os.path.relpath(final, home), tmp_link)
    os.replace(tmp_link, link)
    for entry in (home / "builds").iterdir():
        if entry.resolve() != final.resolve() and not entry.name.startswith(".tmp-"):
            shutil.rmtree(entry, ignore_errors=True)
    log(f"reference target ready: {link} -> {final}")


def _boot_files(work: Path, deploy: Path, packages: dict[str, Path], kernel: assemble.KernelTree,
                boot: HostBoot, distro: Distro, machine: ReferenceMachine) -> None:
    """Xen (uncompressed where Debian ships it gzip'd: QEMU's multiboot loader needs the ELF),
    dom0's kernel and the initrd."""
    xen = packages[distro.hypervisor_package] / distro.hypervisor_path
    if xen.suffix == ".gz":
        with gzip.open(xen, "rb") as packed, open(deploy / machine.xen_binary, "wb") as out:
            shutil.copyfileobj(packed, out)
    else:
        shutil.copy2(xen, deploy / machine.xen_binary)
    shutil.copy2(kernel.image, deploy / machine.kernel)
    assemble.initrd_tree(packages, kernel, work / "initrd", machine.extra_modules)
    assemble.write_initrd(work / "initrd", deploy / machine.initrd)
    boot.check_layout((deploy / machine.kernel).stat().st_size, (deploy / machine.initrd).stat().st_size)


def _assemble(work: Path, deploy: Path, records: Sequence[PackageRecord], debs: dict[str, Path],
              boot: HostBoot, timer: _Timer, log: Log, distro: Distro,
              machine: ReferenceMachine = ARM64) -> list[dict[str, Any]]:
    from . import compatguests  # imports GuestSpec from here

    with timer.step("unpack"):
        packages, kernel = _unpack(work, records, debs)

    with timer.step("boot files"):
        _boot_files(work, deploy, packages, kernel, boot, distro, machine)

    with timer.step("guest images"):
        _guest_images(work / "guests", deploy, packages, distro.label, machine)
        if machine.compat_guests:
            compatguests.guest_images(work / "compat", deploy, packages, distro.xen_version, log, distro.label)
        if machine.dom0less:
            dom0less.build_ramdisk(packages, work / "guests", deploy)

    with timer.step("dom0 tree"):
        dom0_root = work / "dom0"
        dom0.dom0_tree(packages, kernel, dom0_root, distro, hostname=machine.machine,
                       extra_modules=machine.extra_modules)
        if machine.compat_guests:
            compatguests.install_bundle_package(work / "compat", dom0_root)
        if machine.dom0less:
            dom0less.install_dom0_support(dom0_root, distro.xen_bin_dir)

    with timer.step("bundle guests"):
        installed = _bundle(dom0_root, deploy, log, distro.xen_version, machine)

    with timer.step("dom0 image"):
        assemble.make_ext4(dom0_root, deploy / machine.host_rootfs, label="xen-dom0")
    return installed


def _unpack(work: Path, records: Sequence[PackageRecord],
            debs: dict[str, Path]) -> tuple[dict[str, Path], assemble.KernelTree]:
    kernel_name = next(r.name for r in records if r.name.startswith("linux-image-"))
    packages: dict[str, Path] = {}
    for record in records:
        if record.name != kernel_name:
            packages[record.name] = work / "pkgs" / record.name
            extract_deb(debs[record.name], packages[record.name])
    return packages, assemble.unpack_kernel(debs[kernel_name], work / "kernel")


def guest_root(packages: dict[str, Path], tree: Path, spec: GuestSpec, origin: str,
               hostname: str = MACHINE) -> None:
    """A guest's root file system (busybox, the shutdown marker script), named after its domain."""
    assemble.guest_tree(packages, tree, origin, hostname=hostname)
    (tree / "etc/hostname").write_text(f"{spec.name}\n")
    (tree / "etc/xen-ref").mkdir(parents=True, exist_ok=True)
    (tree / "etc/xen-ref/guest").write_text(f"name={spec.name}\nform={spec.form}\n")


def _guest_images(work: Path, deploy: Path, packages: dict[str, Path], origin: str,
                  machine: ReferenceMachine = ARM64) -> None:
    """Each guest's disk (busybox, its name, the shutdown marker script) and deploy configs."""
    for spec in machine.guests:
        tree = work / spec.name
        guest_root(packages, tree, spec, origin, machine.machine)
        assemble.make_ext4(tree, deploy / spec.disk, label=spec.name[:16],
                           size_bytes=GUEST_DISK_BYTES)
    for spec in machine.guests:
        if spec.form == "deploy-config":
            text = deploy_config_text(spec, "A third-party guest: a config dropped into the deploy folder.",
                                      machine)
            (deploy / spec.config).write_text(text)
        elif spec.form == "auto-bundle":
            (deploy / spec.config).write_text(_auto_bundle_config(spec, machine))


def _auto_bundle_config(spec: GuestSpec, machine: ReferenceMachine = ARM64) -> str:
    """The config a guest image with XEN_GUEST_AUTO_BUNDLE deploys for itself.

    Rendered by the same function as ``xen-ref-guest.bbclass``'s ``do_xen_guest_bundle_config``.
    """
    import xenbundle.guests

    return xenbundle.guests.auto_bundle_config(guest_settings(spec.name, machine), spec.disk, machine.kernel)


def _bundle(dom0_root: Path, deploy: Path, log: Log, xen_version: str,
            machine: ReferenceMachine = ARM64) -> list[dict[str, Any]]:
    """Bundle the guests into dom0's tree with the layer's engine, all forms in one call.

    The configs are checked against the xl grammar of ``xen_version``, the Xen of dom0's xl.

    Guests marked ``autostart`` are passed as ``XEN_GUEST_AUTOSTART`` does: their configs are
    linked into ``/etc/xen/auto``, where xendomains starts them at boot. meta-virtualization's
    forms come from :mod:`xenreftarget.compatguests`; configs are checked for dom0's Xen.
    """
    from . import compatguests  # imports GuestSpec from here

    try:
        import xenbundle
    except ImportError as err:
        raise BuildError(f"the bundling engine xenbundle cannot be imported ({err}); "
                         "put the layer's lib/ folder on PYTHONPATH") from None
    guests = machine.guests
    compat = compatguests.bundle_arguments() if machine.compat_guests else {}
    entries = " ".join(f"{g.disk}:{machine.kernel}" for g in guests if g.form == "XEN_BUNDLED_GUESTS")

    def settings(domain_name: str) -> Any:
        return guest_settings(domain_name, machine)

    try:
        result = xenbundle.bundle_guests(str(dom0_root), str(deploy), bundled_guests=entries,
                                         config_glob="xen-guest-bundle*.cfg", settings=settings,
                                         autostart=[g.name for g in guests if g.autostart], log=log,
                                         xen_version=xen_version, **compat)
    except xenbundle.BundleError as err:
        raise BuildError(f"bundling the guests failed:\n{err}") from None
    disks = {g.name: g.disk for g in all_guests(machine)}
    # Origins name files in the temporary build folder: keep them relative to the deploy folder.
    return [{"name": g.name, "config": "/" + str(g.config).lstrip("/"),
             "files": ["/" + str(f).lstrip("/") for f in g.files],
             "disk": next(("/" + f.lstrip("/") for f in g.files if f.endswith("/" + disks.get(g.name, "?"))), ""),
             "autostart": g.autostart_link is not None,
             "autostart_link": "/" + g.autostart_link if g.autostart_link else None,
             "origin": str(g.origin).replace(str(deploy) + os.sep, "")}
            for g in result.guests]
