"""Fixtures that parse this layer's classes with the real BitBake ``bb`` library.

The ``bb`` library comes from the PyPI wheel ``bitbake-setup``; oe-core is not
available here, so recipes under test inherit only this layer's classes (and,
for ``features_check``, the documented stand-in in ``stub-layer/``).  The
configuration is a small hand-written ``conf/bitbake.conf`` holding the few
oe-core variables the classes read, with oe-core's own definitions where they
matter (IMAGE_LINK_NAME and its suffixes).
"""

from __future__ import annotations

import logging
import os
import pathlib
import sys
import textwrap

import pytest

HERE = pathlib.Path(__file__).resolve().parent
LAYER = HERE.parent.parent
STUB_LAYER = HERE / "stub-layer"

# hashserv stand-in first (see stubs/hashserv/__init__.py), then the layer's lib/
# as addpylib would add it.
for path in (HERE / "stubs", LAYER / "lib"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import bb
import bb.build
import bb.data
import bb.parse
import bb.utils

BITBAKE_CONF = """\
# Minimal configuration for tests/bitbake (not oe-core's bitbake.conf).
TMPDIR = "${TOPDIR}/tmp"
PN = "${@bb.parse.vars_from_file(d.getVar('FILE', False), d)[0] or 'defaultpkgname'}"
PV = "${@bb.parse.vars_from_file(d.getVar('FILE', False), d)[1] or '1.0'}"
MACHINE = "qemuarm64"
OVERRIDES = "qemuarm64:pn-${PN}"
WORKDIR = "${TMPDIR}/work/${PN}"
T = "${WORKDIR}/temp"
B = "${WORKDIR}/build"
DEPLOY_DIR_IMAGE = "${TMPDIR}/deploy/images/${MACHINE}"
IMAGE_ROOTFS = "${WORKDIR}/rootfs"
IMGDEPLOYDIR = "${WORKDIR}/deploy-${PN}-image-complete"
KERNEL_IMAGETYPE = "Image"
IMAGE_BASENAME = "${PN}"
# As oe-core's image-artifact-names.bbclass defines them:
IMAGE_MACHINE_SUFFIX ??= "-${MACHINE}"
IMAGE_NAME_SUFFIX ??= ".rootfs"
IMAGE_LINK_NAME ?= "${IMAGE_BASENAME}${IMAGE_MACHINE_SUFFIX}${IMAGE_NAME_SUFFIX}"
IMAGE_FSTYPES ?= "ext4"
IMAGE_ROOTFS_EXTRA_SPACE ?= "0"
PREFERRED_PROVIDER_virtual/kernel ?= "linux-yocto"
DISTRO_FEATURES ?= "xen systemd virtualization"
# As oe-core's bitbake.conf defines them (paths of the bundle package classes):
prefix = "/usr"
datadir = "${prefix}/share"
D = "${WORKDIR}/image"
UNPACKDIR = "${WORKDIR}/sources"
STAGING_DIR_NATIVE = "${WORKDIR}/recipe-sysroot-native"
STAGING_BINDIR_NATIVE = "${STAGING_DIR_NATIVE}/usr/bin"
STAGING_SBINDIR_NATIVE = "${STAGING_DIR_NATIVE}/usr/sbin"
TARGET_ARCH = "aarch64"
MACHINE_ARCH = "qemuarm64"
"""


class BitBakeError(Exception):
    """Raised by the fixture when parsing fails, carrying BitBake's error log."""


class LogCapture(logging.Handler):
    """Collects BitBake's log records (bb.note/bb.error/bb.fatal messages)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int = logging.DEBUG) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]

    def text(self, level: int = logging.DEBUG) -> str:
        return "\n".join(self.messages(level))


@pytest.fixture
def bblog():
    """Capture the BitBake logger for one test."""
    handler = LogCapture()
    logger = logging.getLogger("BitBake")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


class BitBakeProject:
    """A temporary BitBake project: BBPATH = <tmp>:<layer>:<stub-layer>."""

    def __init__(self, top: pathlib.Path) -> None:
        self.top = top
        (top / "conf").mkdir(parents=True, exist_ok=True)
        (top / "recipes").mkdir(exist_ok=True)
        self.deploy = top / "tmp" / "deploy" / "images" / "qemuarm64"
        self.deploy.mkdir(parents=True)

    def parse(self, recipe_name: str, body: str, local_conf: str = "",
              extra_bbpath: str = "") -> bb.data_smart.DataSmart:
        """Write ``recipes/<recipe_name>.bb`` and parse it with the configuration.

        ``local_conf`` is appended to the configuration like a local.conf; ``extra_bbpath`` (for
        example oe-core's ``meta``) is searched for classes after this layer.
        """
        recipe = self.top / "recipes" / (recipe_name + ".bb")
        recipe.write_text(textwrap.dedent(body))
        return self.parse_file(recipe, local_conf, extra_bbpath=(extra_bbpath,) if extra_bbpath else ())

    def parse_file(self, recipe: pathlib.Path, local_conf: str = "",
                   layers: tuple[pathlib.Path, ...] = (),
                   extra_bbpath: tuple[str, ...] = ()) -> bb.data_smart.DataSmart:
        """Parse an existing recipe file; ``layers`` are searched for classes after ours.

        ``extra_bbpath`` (for example oe-core's ``meta``) comes last, after the stand-ins.

        The configuration inherits the stand-in ``logging`` class (stub-layer), as
        oe-core's configuration inherits its own, so that shell tasks can call
        bbnote/bbwarn/bbfatal.
        """
        (self.top / "conf" / "bitbake.conf").write_text(BITBAKE_CONF + textwrap.dedent(local_conf))
        d = bb.data.init()
        d.setVar("BBPATH", ":".join(str(p) for p in (self.top, LAYER, *layers, STUB_LAYER, *extra_bbpath)))
        d.setVar("TOPDIR", str(self.top))
        d.setVar("__bbclasstype", "recipe")
        bb.parse.init_parser(d)
        d = bb.parse.handle(os.path.join("conf", "bitbake.conf"), d)
        bb.parse.BBHandler.inherit("logging", "conf/bitbake.conf", 0, d)
        envs: dict[str, object] = bb.parse.handle(str(recipe), bb.data.createCopy(d), 0)
        rd = envs[""]
        os.makedirs(rd.getVar("T"), exist_ok=True)
        return rd


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A fresh BitBake project in a temporary directory (cwd set to it)."""
    monkeypatch.chdir(tmp_path)
    return BitBakeProject(tmp_path)


# ----------------------------------------------------------- meta-virtualization

META_VIRT_FILES = ("classes/xen-guest-bundle.bbclass", "classes/xen-guest-cross-install.bbclass",
                   "recipes-extended/xen-guest-bundles")
META_VIRT_BRANCHES = ("wrynose", "master")
HOW_TO_META_VIRT = (
    "these tests run meta-virtualization's own guest bundling classes: set XEN_REF_META_VIRT to "
    "meta-virtualization checkouts (':'-separated), or provide its snapshot "
    "(OE_MIRRORS=<dir> with <dir>/lmp-mirrors+meta-virtualization/repo, the layout of "
    "/work/shared/tools/README.md), or a setup-oe-env environment (/opt/oe-env/*/meta-virtualization). "
    "Deselect them explicitly with -m 'not oecore'.")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "oecore: needs openembedded-core or meta-virtualization "
                                       "sources (see tests/oe and tests/bitbake conftest.py)")


def _meta_virt_from_snapshot(tmp: pathlib.Path) -> list[tuple[str, pathlib.Path]]:
    """Branches of meta-virtualization's bare snapshot, only the bundling files, in ``tmp``."""
    import subprocess
    snapshot = pathlib.Path(os.environ.get("OE_MIRRORS", "/work/.mirror")) / \
        "lmp-mirrors+meta-virtualization" / "repo"
    found = []
    if not snapshot.is_dir():
        return found
    for branch in META_VIRT_BRANCHES:
        dest = tmp / branch
        dest.mkdir()
        archive = subprocess.run(["git", "-C", str(snapshot), "archive", "--format=tar", branch,
                                  *META_VIRT_FILES], capture_output=True, check=False)
        if archive.returncode != 0:
            continue
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
        found.append((branch, dest))
    return found


@pytest.fixture(scope="session")
def meta_virt_layers(tmp_path_factory) -> list[tuple[str, pathlib.Path]]:
    """``(name, folder)`` of each meta-virtualization with the 2026 guest bundling classes.

    Nothing of it is copied into this repository: the files are read from a
    checkout or extracted from the snapshot into a temporary folder.
    """
    value = os.environ.get("XEN_REF_META_VIRT", "")
    candidates = [pathlib.Path(p) for p in value.split(":") if p] if value else []
    layers = [(str(p), p) for p in candidates
              if (p / "classes" / "xen-guest-bundle.bbclass").is_file()]
    if not value:
        layers = _meta_virt_from_snapshot(tmp_path_factory.mktemp("meta-virtualization"))
        if not layers:
            import glob
            layers = [(p, pathlib.Path(p)) for p in sorted(glob.glob("/opt/oe-env/*/meta-virtualization"))
                      if os.path.isfile(os.path.join(p, "classes", "xen-guest-bundle.bbclass"))]
    if not layers:
        pytest.fail(HOW_TO_META_VIRT, pytrace=False)
    return layers
