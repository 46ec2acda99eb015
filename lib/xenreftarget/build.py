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

from xenboot import XenBoot, XenHostBoot, write_qemuboot

from . import assemble, dom0, dom0less, stamp
from .apt import PrivateApt
from .errors import ReferenceTargetError
from .initscripts import SHUTDOWN_MARKER
from .packages import (
    Distro,
    PackageError,
    PackageRecord,
    extract_deb,
    missing_host_tools,
)

Log = Callable[[str], None]

MACHINE = "qemuarm64"
XEN_BINARY = f"xen-{MACHINE}"
KERNEL = "Image"
INITRD = f"xen-ref-initramfs-{MACHINE}.cpio.gz"
HOST_IMAGE_LINK_NAME = f"xen-image-minimal-{MACHINE}.rootfs"
HOST_ROOTFS = f"{HOST_IMAGE_LINK_NAME}.ext4"
#: The name the project's contract uses for the host's qemuboot.conf.
QEMUBOOT_CONF = f"xen-image-minimal-{MACHINE}.qemuboot.conf"
#: The name oe-core writes (``${IMAGE_LINK_NAME}.qemuboot.conf``), a symlink to the former.
QEMUBOOT_CONF_LINK = f"{HOST_IMAGE_LINK_NAME}.qemuboot.conf"
GUEST_DISK_BYTES = 64 << 20
GUEST_MEMORY_MB = 128
GUEST_EXTRA = "console=hvc0 root=/dev/xvda rw quiet"
#: How QEMU boots the reference target: the qemuboot.conf contract's defaults (xenboot) except
#: for a smaller machine, Debian's kernel with its initrd, and a quiet boot.
REFERENCE_BOOT = XenHostBoot(
    machine=MACHINE, image_link_name=HOST_IMAGE_LINK_NAME, xen_binary=XEN_BINARY, memory_mb=1024, smp=2,
    xen=XenBoot(dom0_kernel=KERNEL, dom0_initrd=INITRD, dom0_mem="384M",
                dom0_bootargs="console=hvc0 root=/dev/vda rw quiet",
                cmdline_extra="dom0_max_vcpus=2 loglvl=warning guest_loglvl=warning"))
#: Xen 4.18 made INFO the level of a printk without one ("Xen version ...", "*** Serial input
#: to DOM0", which the harness's boot phases wait for): ``loglvl=warning`` hides them on 4.20.
#: From 4.18 on the reference target logs at Xen's default, ``loglvl=info``.
_QUIET_LOGLVL_BEFORE = (4, 18)


def reference_boot(distro: Distro) -> XenHostBoot:
    """How QEMU boots the reference target of ``distro`` (:data:`REFERENCE_BOOT` but Xen's log level)."""
    major, minor = (int(part) for part in distro.xen_version.split("."))
    if (major, minor) < _QUIET_LOGLVL_BEFORE:
        return REFERENCE_BOOT
    extra = REFERENCE_BOOT.xen.cmdline_extra.replace("loglvl=warning ", "loglvl=info ")
    return replace(REFERENCE_BOOT, xen=replace(REFERENCE_BOOT.xen, cmdline_extra=extra))


class BuildError(ReferenceTargetError):
    """The target could not be built; the message says which step failed and what to do."""


@dataclass(frozen=True)
class GuestSpec:
    """One guest of the reference target and the bundling form that brings it into dom0."""

    form: str            #: "XEN_BUNDLED_GUESTS", "deploy-config", "auto-bundle" (or a compatguests form)
    name: str            #: domain name
    disk: str            #: the guest's root file system in the deploy folder
    config: str = ""     #: config file in the deploy folder (forms 2 and 3)
    autostart: bool = False  #: named in XEN_GUEST_AUTOSTART: xendomains starts it at boot


#: The guests: one per bundling form, each with its own disk file and domain name, and one that
#: starts at boot (the others are created by the lifecycle check with ``xl create -c``).
GUESTS: tuple[GuestSpec, ...] = (
    # The bundler names an entry's domain after its rootfs file.
    GuestSpec("XEN_BUNDLED_GUESTS", f"xen-guest-image-minimal-{MACHINE}",
              f"xen-guest-image-minimal-{MACHINE}.rootfs.ext4"),
    GuestSpec("deploy-config", "thirdparty-guest", "thirdparty-guest.ext4",
              "xen-guest-bundle-thirdparty-guest.cfg"),
    GuestSpec("auto-bundle", "xen-guest-image-auto",
              f"xen-guest-image-auto-{MACHINE}.rootfs.ext4",
              f"xen-guest-bundle-xen-guest-image-auto-{MACHINE}.rootfs.cfg"),
    GuestSpec("XEN_BUNDLED_GUESTS", f"xen-guest-image-autostart-{MACHINE}",
              f"xen-guest-image-autostart-{MACHINE}.rootfs.ext4", autostart=True),
)


def all_guests() -> tuple[GuestSpec, ...]:
    """Every guest: :data:`GUESTS` and those of meta-virtualization's forms (compatguests)."""
    from .compatguests import COMPAT_GUESTS

    return GUESTS + COMPAT_GUESTS


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


def deploy_config_text(spec: GuestSpec, comment: str) -> str:
    """A guest config as it would lie in DEPLOY_DIR_IMAGE: paths relative to that folder."""
    return (
        f"# {comment}\n"
        f'name = "{spec.name}"\n'
        'type = "pvh"\n'
        f"memory = {GUEST_MEMORY_MB}\n"
        "vcpus = 1\n"
        f'kernel = "{KERNEL}"\n'
        "# Debian's kernel has ext4 and xen-blkfront as modules: the initrd loads them.\n"
        f'ramdisk = "{INITRD}"\n'
        f'extra = "{GUEST_EXTRA}"\n'
        f"disk = [ 'file:{spec.disk},xvda,rw' ]\n"
        "vif = [ 'bridge=xenbr0' ]\n"
    )


def guest_settings(name: str) -> Any:
    """Settings of a generated guest config (the bbclasses read them from ``XEN_GUEST_*``)."""
    from xenbundle import GuestSettings

    return GuestSettings(name=name, memory=GUEST_MEMORY_MB, vcpus=1, extra=GUEST_EXTRA,
                         vif=("bridge=xenbr0",), ramdisk=INITRD)


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
    choice); any other gets ``<cache>/<suite>-<arch>``, so that each suite has its own target.
    """
    return cache_dir if distro == _DEFAULT_DISTRO else cache_dir / f"{distro.suite}-{distro.arch}"


def _debian_option(distro: Distro) -> str:
    return "" if distro == _DEFAULT_DISTRO else f" --debian {distro.suite}"


def current_reference_target(cache_dir: Path | None = None,
                             distro: Distro = _DEFAULT_DISTRO) -> ReferenceTarget:
    """The current build of ``distro`` in ``cache_dir`` (no building); fails when there is none."""
    deploy = distro_dir(Path(cache_dir or default_cache_dir()), distro) / "target"
    manifest = stamp.read_manifest(deploy)
    if manifest is None:
        raise BuildError(f"no Debian {distro.suite}/{distro.arch} reference target in "
                         f"{deploy.parent}: run 'xen-ref-target build{_debian_option(distro)}'")
    built = manifest.get("distro", {})
    if (built.get("suite", distro.suite), built.get("arch", distro.arch)) != (distro.suite, distro.arch):
        raise BuildError(f"{deploy} holds a Debian {built.get('suite')}/{built.get('arch')} build, "
                         f"not {distro.suite}/{distro.arch}: run 'xen-ref-target build"
                         f"{_debian_option(distro)} --force'")
    return ReferenceTarget(deploy, deploy / QEMUBOOT_CONF, deploy / HOST_ROOTFS,
                           manifest.get("guests", []), manifest)


def _settings_for_key(boot: XenHostBoot, distro: Distro) -> dict[str, Any]:
    return {"boot": json.dumps(asdict(boot), sort_keys=True),
            "distro": f"{distro.suite}/{distro.arch}",
            "guests": json.dumps([asdict(g) for g in all_guests()])}


def build_target(cache_dir: Path | None = None, force: bool = False, log: Log = print,
                 apt: PrivateApt | None = None, boot: XenHostBoot | None = None,
                 distro: Distro = _DEFAULT_DISTRO) -> ReferenceTarget:
    """Build (or reuse) the reference target in ``cache_dir`` and return it.

    Reuses the current build when its key matches and its files are intact, unless ``force``.
    Packages come from a private apt state in ``<cache>/apt`` (see :mod:`xenreftarget.apt`);
    the build and its ``target`` link are in :func:`distro_dir`. ``boot`` defaults to
    :func:`reference_boot` of ``distro``.
    """
    boot = boot or reference_boot(distro)
    cache_dir = Path(cache_dir or default_cache_dir()).absolute()
    if any(ch.isspace() for ch in str(cache_dir)):
        raise BuildError(f"cache folder {cache_dir} contains white space, which QEMU options in "
                         "qemuboot.conf cannot carry; choose another with --cache or XEN_REF_CACHE")
    missing = missing_host_tools()
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
                                    _settings_for_key(boot, distro))
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
        log(f"building the reference target ({reason})")
        deploy = _build(cache_dir, records, inputs, key, boot, apt, log, distro)
        _publish(home, deploy, log)
        target = current_reference_target(cache_dir, distro)
        target.rebuilt = True
        return target


def _build(cache_dir: Path, records: Sequence[PackageRecord], inputs: dict[str, Any], key: str,
           boot: XenHostBoot, apt: PrivateApt, log: Log, distro: Distro) -> Path:
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
        guests = _assemble(tmp / "work", deploy, records, debs, boot, timer, log, distro)
        with timer.step("dom0less boot"):
            boot_values = {**boot.variables(), **dom0less.boot_variables(boot, deploy, tmp / "dtb")}
            write_qemuboot(deploy / dom0less.NO_DOM0_QEMUBOOT_CONF,
                           dom0less.no_dom0_variables(boot, deploy, tmp / "dtb-no-dom0"))
        with timer.step("qemuboot.conf"):
            write_qemuboot(deploy / QEMUBOOT_CONF, boot_values)
            os.symlink(QEMUBOOT_CONF, deploy / QEMUBOOT_CONF_LINK)
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
            "shutdown_marker": SHUTDOWN_MARKER,
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


def _assemble(work: Path, deploy: Path, records: Sequence[PackageRecord], debs: dict[str, Path],
              boot: XenHostBoot, timer: _Timer, log: Log, distro: Distro) -> list[dict[str, Any]]:
    from . import compatguests  # imports GuestSpec from here

    with timer.step("unpack"):
        packages, kernel = _unpack(work, records, debs)

    with timer.step("boot files"):
        xen = packages[distro.hypervisor_package] / distro.hypervisor_path
        shutil.copy2(xen, deploy / XEN_BINARY)
        shutil.copy2(kernel.image, deploy / KERNEL)
        assemble.initrd_tree(packages, kernel, work / "initrd")
        assemble.write_initrd(work / "initrd", deploy / INITRD)
        boot.check_layout((deploy / KERNEL).stat().st_size, (deploy / INITRD).stat().st_size)

    with timer.step("guest images"):
        _guest_images(work / "guests", deploy, packages, distro.label)
        compatguests.guest_images(work / "compat", deploy, packages, distro.xen_version, log, distro.label)
        dom0less.build_ramdisk(packages, work / "guests", deploy)

    with timer.step("dom0 tree"):
        dom0_root = work / "dom0"
        dom0.dom0_tree(packages, kernel, dom0_root, distro)
        compatguests.install_bundle_package(work / "compat", dom0_root)
        dom0less.install_dom0_support(dom0_root, distro.xen_bin_dir)

    with timer.step("bundle guests"):
        installed = _bundle(dom0_root, deploy, log, distro.xen_version)

    with timer.step("dom0 image"):
        assemble.make_ext4(dom0_root, deploy / HOST_ROOTFS, label="xen-dom0")
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


def guest_root(packages: dict[str, Path], tree: Path, spec: GuestSpec, origin: str) -> None:
    """A guest's root file system (busybox, the shutdown marker script), named after its domain."""
    assemble.guest_tree(packages, tree, origin)
    (tree / "etc/hostname").write_text(f"{spec.name}\n")
    (tree / "etc/xen-ref").mkdir(parents=True, exist_ok=True)
    (tree / "etc/xen-ref/guest").write_text(f"name={spec.name}\nform={spec.form}\n")


def _guest_images(work: Path, deploy: Path, packages: dict[str, Path], origin: str) -> None:
    """Each guest's disk (busybox, its name, the shutdown marker script) and deploy configs."""
    for spec in GUESTS:
        tree = work / spec.name
        guest_root(packages, tree, spec, origin)
        assemble.make_ext4(tree, deploy / spec.disk, label=spec.name[:16],
                           size_bytes=GUEST_DISK_BYTES)
    for spec in GUESTS:
        if spec.form == "deploy-config":
            text = deploy_config_text(spec, "A third-party guest: a config dropped into the deploy folder.")
            (deploy / spec.config).write_text(text)
        elif spec.form == "auto-bundle":
            (deploy / spec.config).write_text(_auto_bundle_config(spec))


def _auto_bundle_config(spec: GuestSpec) -> str:
    """The config a guest image with XEN_GUEST_AUTO_BUNDLE deploys for itself.

    Rendered by the same function as ``xen-ref-guest.bbclass``'s ``do_xen_guest_bundle_config``.
    """
    import xenbundle.guests

    return xenbundle.guests.auto_bundle_config(guest_settings(spec.name), spec.disk, KERNEL)


def _bundle(dom0_root: Path, deploy: Path, log: Log, xen_version: str) -> list[dict[str, Any]]:
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
    entries = " ".join(f"{g.disk}:{KERNEL}" for g in GUESTS if g.form == "XEN_BUNDLED_GUESTS")

    def settings(domain_name: str) -> Any:
        return guest_settings(domain_name)

    try:
        result = xenbundle.bundle_guests(str(dom0_root), str(deploy), bundled_guests=entries,
                                         config_glob="xen-guest-bundle*.cfg", settings=settings,
                                         autostart=[g.name for g in GUESTS if g.autostart], log=log,
                                         xen_version=xen_version, **compatguests.bundle_arguments())
    except xenbundle.BundleError as err:
        raise BuildError(f"bundling the guests failed:\n{err}") from None
    disks = {g.name: g.disk for g in all_guests()}
    # Origins name files in the temporary build folder: keep them relative to the deploy folder.
    return [{"name": g.name, "config": "/" + str(g.config).lstrip("/"),
             "files": ["/" + str(f).lstrip("/") for f in g.files],
             "disk": next(("/" + f.lstrip("/") for f in g.files if f.endswith("/" + disks.get(g.name, "?"))), ""),
             "autostart": g.autostart_link is not None,
             "autostart_link": "/" + g.autostart_link if g.autostart_link else None,
             "origin": str(g.origin).replace(str(deploy) + os.sep, "")}
            for g in result.guests]
