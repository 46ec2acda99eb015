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
        (self.top / "conf" / "bitbake.conf").write_text(BITBAKE_CONF + textwrap.dedent(local_conf))
        recipe = self.top / "recipes" / (recipe_name + ".bb")
        recipe.write_text(textwrap.dedent(body))
        d = bb.data.init()
        d.setVar("BBPATH", ":".join(p for p in (str(self.top), str(LAYER), str(STUB_LAYER), extra_bbpath) if p))
        d.setVar("TOPDIR", str(self.top))
        d.setVar("__bbclasstype", "recipe")
        bb.parse.init_parser(d)
        d = bb.parse.handle(os.path.join("conf", "bitbake.conf"), d)
        envs: dict[str, object] = bb.parse.handle(str(recipe), bb.data.createCopy(d), 0)
        rd = envs[""]
        os.makedirs(rd.getVar("T"), exist_ok=True)
        return rd


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A fresh BitBake project in a temporary directory (cwd set to it)."""
    monkeypatch.chdir(tmp_path)
    return BitBakeProject(tmp_path)
