# SPDX-License-Identifier: MIT
"""Glue between this layer, an oe-core environment made by setup-oe-env, and the reference target.

Pure helpers (no BitBake import) used by the entry points in this folder:

* :func:`oe_environment` finds ``/opt/oe-env/<release>`` (bitbake, openembedded-core,
  meta-openembedded, meta-virtualization checkouts);
* :func:`local_conf_lines` takes the local.conf lines from the layer's kas configuration, so the
  build the scripts parse is configured like the documented kas build;
* :func:`write_build_conf` writes ``conf/bblayers.conf`` and ``conf/local.conf`` of a build dir;
* :func:`make_native_sysroot` builds the stand-in for oe-core's native sysroot that runqemu and
  QemuRunner need (see its docstring: it is a stand-in, not a built sysroot);
* :func:`read_qemuboot` reads a qemuboot.conf the way runqemu does (through :mod:`xenboot`, the
  layer's one qemuboot.conf reader).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

LAYER = Path(__file__).resolve().parents[2]
if str(LAYER / "lib") not in sys.path:
    sys.path.insert(0, str(LAYER / "lib"))  # xenboot: standard library only, any python3 runs it

import xenboot

KAS_COMMON = LAYER / "kas" / "xen-ref-common.yml"

#: meta-openembedded sub-layers meta-virtualization depends on.
META_OE_LAYERS = ("meta-oe", "meta-python", "meta-networking", "meta-filesystems")


class GlueError(RuntimeError):
    """An environment, file or setting the scripts need is missing; the message says how to fix it."""


@dataclass(frozen=True)
class OeEnvironment:
    """Checkouts of one release as ``setup-oe-env`` lays them out."""

    root: Path

    @property
    def release(self) -> str:
        return self.root.name

    @property
    def bitbake(self) -> Path:
        return self.root / "bitbake"

    @property
    def oecore(self) -> Path:
        return self.root / "openembedded-core"

    @property
    def meta_openembedded(self) -> Path:
        return self.root / "meta-openembedded"

    @property
    def meta_virtualization(self) -> Path:
        return self.root / "meta-virtualization"

    def layers(self, layer: Path = LAYER) -> list[Path]:
        """BBLAYERS for a Xen build: oe-core's meta, the meta-oe layers, meta-virtualization, ``layer``."""
        return ([self.oecore / "meta"] + [self.meta_openembedded / name for name in META_OE_LAYERS]
                + [self.meta_virtualization, layer])


def use_layer_python(script: str, argv: Sequence[str], needs: Sequence[str] = ("pexpect", "qemu.qmp")) -> None:
    """Re-run ``script`` with the layer's virtual environment when this python lacks ``needs``.

    The OEQA cases import the harness (pexpect) and QemuRunner imports QEMU's QMP library
    (``qemu.qmp`` from PyPI, behind the native-sysroot stand-in); both live in the venv that
    scripts/setup-host makes (``$XEN_REF_VENV``, default ``<layer>/.venv``), not in the
    machine's python3 that the ``#!/usr/bin/env python3`` line finds.
    """
    import importlib.util

    missing = [name for name in needs if importlib.util.find_spec(name.split(".")[0]) is None
               or (("." in name) and _missing_submodule(name))]
    if not missing:
        return
    venv = Path(os.environ.get("XEN_REF_VENV") or LAYER / ".venv")
    venv_python = venv / "bin" / "python"
    # (a venv's python is a link to the base interpreter: compare the environments, not the binaries)
    if not venv_python.exists() or Path(sys.prefix).resolve() == venv.resolve():
        raise SystemExit(f"{Path(script).name}: python {sys.executable} lacks {', '.join(missing)}: run "
                         "scripts/setup-host (it makes the layer's venv, .venv)")
    os.execv(str(venv_python), [str(venv_python), script, *argv])


def _missing_submodule(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is None
    except ModuleNotFoundError:
        return True


def oe_environment(release: str = "wrynose", root: Path | None = None) -> OeEnvironment:
    """Return the environment for ``release`` (``$OE_ENV`` or ``/opt/oe-env/<release>``); check it."""
    base = Path(root) if root else Path(os.environ.get("OE_ENV") or f"/opt/oe-env/{release}")
    env = OeEnvironment(base)
    for checkout in (env.bitbake / "bin" / "bitbake", env.oecore / "scripts" / "runqemu",
                     env.meta_openembedded / "meta-oe", env.meta_virtualization / "conf" / "layer.conf"):
        if not checkout.exists():
            raise GlueError(f"{checkout} is missing: create the environment with "
                            f"/work/shared/tools/setup-oe-env --mirrors <DIR> --release {release} "
                            f"(or point OE_ENV at one)")
    return env


def local_conf_lines(sections: Sequence[str] = ("10-xen-ref-distro", "20-xen-ref-bundling"),
                     kas_file: Path = KAS_COMMON) -> str:
    """The given ``local_conf_header`` sections of the layer's kas configuration, in order."""
    config = yaml.safe_load(kas_file.read_text())
    headers: dict[str, str] = config.get("local_conf_header", {})
    missing = [name for name in sections if name not in headers]
    if missing:
        raise GlueError(f"{kas_file}: local_conf_header has no section {', '.join(missing)}")
    return "".join(headers[name].rstrip("\n") + "\n" for name in sections)


def write_build_conf(build_dir: Path, layers: Iterable[Path], machine: str, env: OeEnvironment,
                     extra_lines: str = "") -> None:
    """Write ``conf/bblayers.conf`` and ``conf/local.conf`` (DL_DIR/SSTATE_DIR of the environment)."""
    conf = build_dir / "conf"
    conf.mkdir(parents=True, exist_ok=True)
    bblayers = "".join(f"    {p} \\\n" for p in layers)
    (conf / "bblayers.conf").write_text(
        "# written by meta-xen-ref scripts/oe\n"
        'POKY_BBLAYERS_CONF_VERSION = "2"\n'
        'BBPATH = "${TOPDIR}"\n'
        'BBFILES ?= ""\n'
        f'BBLAYERS ?= " \\\n{bblayers}    "\n')
    (conf / "local.conf").write_text(
        "# written by meta-xen-ref scripts/oe\n"
        f'MACHINE ??= "{machine}"\n'
        f'DL_DIR ?= "{env.root}/downloads"\n'
        f'SSTATE_DIR ?= "{env.root}/sstate-cache"\n'
        'BB_HASHSERVE_DB_DIR = "${SSTATE_DIR}"\n'
        'CONF_VERSION = "2"\n'
        "# Only parsing here: no fetching, no connectivity check, no disk monitor.\n"
        'BB_NO_NETWORK = "1"\n'
        'CONNECTIVITY_CHECK_URIS = ""\n'
        'BB_DISKMON_DIRS = ""\n'
        + local_conf_lines() + extra_lines)
    (conf / "templateconf.cfg").write_text(str(env.oecore / "meta" / "conf" / "templates" / "default") + "\n")


#: Text of the ``qmp`` package stand-in: QemuRunner imports ``qmp`` and ``qmp.legacy`` from
#: ``<native sysroot>/usr/lib/qemu-python`` (qemu-native installs QEMU's python/qemu/qmp there).
_QMP_SHIM = {
    "__init__.py": ('"""Stand-in for qemu-native\'s usr/lib/qemu-python/qmp: QEMU\'s own QMP library\n'
                    'from PyPI (qemu.qmp), written by meta-xen-ref scripts/oe/oeglue.py."""\n'
                    "from qemu.qmp import *  # noqa: F401,F403\n"),
    "legacy.py": "from qemu.qmp.legacy import *  # noqa: F401,F403\n",
}


def make_native_sysroot(directory: Path, qemu_binaries: Sequence[str] = ("qemu-system-aarch64",),
                        search_path: str | None = None) -> Path:
    """Create a stand-in for oe-core's native sysroot and return it.

    A stand-in, because the real one (``recipe-sysroot-native`` of qemu-helper-native) only exists
    after a full build. It holds exactly what runqemu and QemuRunner look up there:

    * ``usr/bin/<qemu binary>``: a symlink to the host's QEMU (runqemu takes QEMU from
      ``STAGING_BINDIR_NATIVE``, which it sets to ``$OECORE_NATIVE_SYSROOT/usr/bin``);
    * ``usr/lib/qemu-python/qmp``: a two-file package re-exporting ``qemu.qmp`` (QEMU's QMP
      library from PyPI), because QemuRunner imports ``qmp.legacy.QEMUMonitorProtocol`` from there.
    """
    bindir = directory / "usr" / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    for name in qemu_binaries:
        found = shutil.which(name, path=search_path)
        if not found:
            raise GlueError(f"{name} not found on PATH: install the host's QEMU (Debian: qemu-system-arm)")
        link = bindir / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(found)
    qmp = directory / "usr" / "lib" / "qemu-python" / "qmp"
    qmp.mkdir(parents=True, exist_ok=True)
    for name, text in _QMP_SHIM.items():
        (qmp / name).write_text(text)
    return directory


def read_qemuboot(path: Path) -> dict[str, str]:
    """The variables of a qemuboot.conf as the file holds them (upper-case names), read the way
    runqemu reads it (interpolation included); a bad file is a :class:`GlueError`."""
    try:
        return xenboot.read_qemuboot(path).written
    except xenboot.BootConfigError as err:
        raise GlueError(str(err)) from None


def read_xen_contract(path: Path) -> xenboot.XenBoot | None:
    """The ``QB_XEN_*`` contract of a qemuboot.conf (None when the file has none)."""
    try:
        return xenboot.XenBoot.from_variables(read_qemuboot(path), path=str(path))
    except xenboot.BootConfigError as err:
        raise GlueError(str(err)) from None


def files_named_by_qemuboot(values: dict[str, str]) -> list[str]:
    """File names (relative to the deploy dir) a qemuboot.conf makes runqemu open."""
    names = [values.get("QB_DEFAULT_KERNEL", "")]
    link = values.get("IMAGE_LINK_NAME") or values.get("IMAGE_NAME", "")
    if link and values.get("QB_DEFAULT_FSTYPE"):
        names.append(f"{link}.{values['QB_DEFAULT_FSTYPE']}")
    for option in ("QB_OPT_APPEND", "QB_ROOTFS_EXTRA_OPT"):
        for word in values.get(option, "").replace('"', " ").replace(",", " ").split():
            if "@DEPLOY_DIR_IMAGE@/" in word:
                names.append(word.split("@DEPLOY_DIR_IMAGE@/", 1)[1])
    return [os.path.basename(n) for n in names if n]


def reftarget_deploy(cache: Path | None = None) -> Path:
    """The reference target's deploy folder (``xen-ref-target build`` output)."""
    if cache is None:
        from xenreftarget.build import default_cache_dir
        cache = default_cache_dir()
    deploy = Path(cache) / "target"
    if not (deploy / "xen-ref-target.json").is_file():
        raise GlueError(f"no reference target in {cache}: run `xen-ref-target build` "
                        "(PYTHONPATH=lib .venv/bin/python -m xenreftarget build)")
    return deploy.resolve()


def prepare_deploy(rendered_conf: Path, reference: Path, folder: Path) -> Path:
    """Make ``folder`` a deploy dir: the reference target's files (symlinks) + the rendered conf.

    The rendered qemuboot.conf replaces the reference target's own one under the name oe-core
    gives it (``<IMAGE_LINK_NAME>.qemuboot.conf``). Every file the rendered conf names must be
    among the reference target's files; otherwise the names the recipe uses and the names the
    reference target writes have drifted apart, and :class:`GlueError` says which.
    Returns the rootfs path (``<IMAGE_LINK_NAME>.<QB_DEFAULT_FSTYPE>``).
    """
    values = read_qemuboot(rendered_conf)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        if old.is_symlink() or old.is_file():
            old.unlink()
    for item in sorted(reference.iterdir()):
        if item.name.endswith(".qemuboot.conf") or item.name == "xen-ref-target.json":
            continue
        (folder / item.name).symlink_to(item)
    link_name = values.get("IMAGE_LINK_NAME") or values["IMAGE_NAME"]
    shutil.copyfile(rendered_conf, folder / f"{link_name}.qemuboot.conf")
    missing = [name for name in files_named_by_qemuboot(values) if not (folder / name).exists()]
    if missing:
        raise GlueError(f"{rendered_conf} names {', '.join(missing)}, which the reference target in "
                        f"{reference} does not have")
    return folder / f"{link_name}.{values['QB_DEFAULT_FSTYPE']}"


def runqemu_environment(env: OeEnvironment, native_sysroot: Path) -> dict[str, str]:
    """os.environ plus what runqemu needs outside a build: oe-core's scripts on PATH, the sysroot."""
    environ = dict(os.environ)
    environ["PATH"] = f"{env.oecore / 'scripts'}:{environ.get('PATH', '/usr/bin:/bin')}"
    environ["OECORE_NATIVE_SYSROOT"] = str(native_sysroot)
    return environ


def default_rendered_conf(release: str) -> Path | None:
    """The qemuboot.conf render-qemuboot wrote for ``release`` (the IMAGE_LINK_NAME symlink), if any."""
    folder = Path(f"/tmp/xen-ref-oe/qemuboot-{release}")
    links = sorted(p for p in folder.glob("*.qemuboot.conf") if p.is_symlink())
    files = sorted(folder.glob("*.qemuboot.conf"), key=lambda p: p.stat().st_mtime)
    return (links or files or [None])[-1]


def link_tmpdir_sysroot(tmpdir: Path, native_sysroot: Path) -> Path:
    """Make ``<tmpdir>/sysroots/<machine>-<os>`` point at the native sysroot stand-in.

    scarthgap's runqemu, started by QemuRunner (which sets ``OE_TMPDIR``), looks for the native
    sysroot there before it looks at ``OECORE_NATIVE_SYSROOT`` (wrynose's takes the latter).
    """
    uname = os.uname()
    link = tmpdir / "sysroots" / f"{uname.machine}-{uname.sysname.lower()}"
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(native_sysroot)
    return link
