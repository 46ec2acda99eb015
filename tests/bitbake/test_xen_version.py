"""The Xen version reaches the grammar from the recipe, under real BitBake.

xen-ref-bundle's do_rootfs step checks the guest configs for the Xen of the
image's xl: XEN_REF_XEN_VERSION, else the PV of xen-tools-xl in pkgdata (as
oe-core's package.bbclass writes ``${PKGDATA_DIR}/runtime/<package>``), else
PREFERRED_VERSION_xen-tools, else 4.17.  A config with ``grant_usage=1`` (Xen
4.19) must stop do_rootfs when the build is for 4.17 and pass for 4.19.  The
pkgdata files are written here the way do_packagedata would leave them (no
package is built: oe-core is not available to these tests, see conftest.py).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import bb
import bb.build
import bb.data
import pytest
from xenref_bbtest import GUEST, GUEST_LINK, HOST

PKGDATA_CONF = 'PKGDATA_DIR = "${TMPDIR}/pkgdata/${MACHINE}"\n'
VIRTIO_CFG = ('name = "virtio-guest"\nkernel = "Image"\n'
              "disk = [ 'vdev=xvda, specification=virtio, grant_usage=1, target=data.img' ]\n")


@pytest.fixture
def deploy(project):
    dep = project.deploy
    (dep / "Image").write_bytes(b"kernel")
    (dep / "data.img").write_bytes(b"virtio disk")
    (dep / "xen-guest-bundle-virtio.cfg").write_text(VIRTIO_CFG)
    return dep


def write_pkgdata(project, pv, package="xen-tools-xl"):
    """``runtime/<package>`` as oe-core's emit_pkgdata writes it (KEY: value lines)."""
    runtime = project.top / "tmp" / "pkgdata" / "qemuarm64" / "runtime"
    runtime.mkdir(parents=True, exist_ok=True)
    (runtime / package).write_text(f"PN: xen-tools\nPV: {pv}\nPR: r0\nPKGV: {pv}\n"
                                   f"FILES:{package}: /usr/sbin/xl\n")


def run_rootfs(project, conf=""):
    d = project.parse("xen-image-minimal", HOST, PKGDATA_CONF + conf)
    rootfs = d.getVar("IMAGE_ROOTFS")
    os.makedirs(rootfs)
    bb.build.exec_func("do_rootfs", d)
    return rootfs


def installed_config(rootfs):
    return Path(rootfs, "etc/xen/xen-guest-bundle-virtio.cfg").read_text()


def assert_refused_for(project, bblog, conf, built):
    with pytest.raises(bb.BBHandledException):
        run_rootfs(project, conf)
    errors = bblog.text(logging.ERROR)
    assert "xen-guest-bundle-virtio.cfg:3" in errors, errors
    assert ("disk keyword `grant_usage=' was added in Xen 4.19, but the Xen version being "
            f"built is {built}") in errors
    assert "raise the Xen version or drop the keyword" in errors
    rootfs = project.top / "tmp" / "work" / "xen-image-minimal" / "rootfs"
    assert os.listdir(rootfs) == [], "nothing of a refused bundle may be left in the rootfs"


# ------------------------------------------------------------------ host: do_rootfs

def test_pkgdata_of_xen_4_17_refuses_a_4_19_keyword(project, deploy, bblog):
    write_pkgdata(project, "4.17+stable")
    assert_refused_for(project, bblog, "", "4.17")
    assert ("xen-ref-bundle: checking the guest configs for Xen 4.17 (the PV of xen-tools-xl in "
            in bblog.text())


def test_pkgdata_of_xen_4_19_accepts_it(project, deploy, bblog):
    write_pkgdata(project, "4.19+stable")
    rootfs = run_rootfs(project)
    assert "grant_usage=1, target=/var/lib/xen/images/data.img" in installed_config(rootfs)
    assert 'for Xen 4.19 (the PV of xen-tools-xl in ' in bblog.text()
    assert '"4.19+stable")' in bblog.text()


def test_pkgdata_wins_over_the_preferred_version(project, deploy, bblog):
    write_pkgdata(project, "4.17+stable")
    assert_refused_for(project, bblog, 'PREFERRED_VERSION_xen-tools = "4.21%"\n', "4.17")


@pytest.mark.parametrize("preferred,accepted", [("4.18+stable%", False), ("4.19%", True),
                                                ("4.21%", True)])
def test_preferred_version_without_pkgdata(project, deploy, bblog, preferred, accepted):
    conf = f'PREFERRED_VERSION_xen-tools = "{preferred}"\n'
    if not accepted:
        assert_refused_for(project, bblog, conf, "4.18")
        return
    rootfs = run_rootfs(project, conf)
    assert "grant_usage=1" in installed_config(rootfs)
    assert f'(PREFERRED_VERSION_xen-tools = "{preferred}")' in bblog.text()


def test_without_any_version_the_oldest_supported_xen_is_checked(project, deploy, bblog):
    assert_refused_for(project, bblog, "", "4.17")
    assert "the oldest supported Xen" in bblog.text()


def test_xen_ref_xen_version_wins_over_everything(project, deploy, bblog):
    write_pkgdata(project, "4.17+stable")
    rootfs = run_rootfs(project, 'XEN_REF_XEN_VERSION = "4.20"\n'
                                 'PREFERRED_VERSION_xen-tools = "4.17%"\n')
    assert "grant_usage=1" in installed_config(rootfs)
    assert '(XEN_REF_XEN_VERSION = "4.20")' in bblog.text()


@pytest.mark.parametrize("conf,needle", [
    ('XEN_REF_XEN_VERSION = "4.16"\n',
     'XEN_REF_XEN_VERSION = "4.16" is Xen 4.16, older than Xen 4.17'),
    ('PREFERRED_VERSION_xen-tools = "git%"\n',
     'PREFERRED_VERSION_xen-tools = "git%" is not a Xen version'),
])
def test_a_bad_version_stops_the_build_naming_the_variable(project, deploy, bblog, conf, needle):
    with pytest.raises(bb.BBHandledException):
        run_rootfs(project, conf)
    assert needle in bblog.text(logging.ERROR)


def test_unusable_pkgdata_version_says_what_to_set(project, deploy, bblog):
    write_pkgdata(project, "git")
    with pytest.raises(bb.BBHandledException):
        run_rootfs(project)
    assert "set XEN_REF_XEN_VERSION to the Xen version of the image's xl" in \
        bblog.text(logging.ERROR)


# ------------------------------------------------------------------ signatures

def task_deps(d):
    ignored = set((d.getVar("BB_HASHEXCLUDE_COMMON") or "").split())
    if d.getVar("__exportlist", False) is None:  # set by the first "export" statement
        d.setVar("__exportlist", [])
    tasklist, gendeps, lookupcache = bb.data.generate_dependencies(d, ignored)
    _deps, basehash = bb.data.generate_dependency_hash(tasklist, gendeps, lookupcache, ignored,
                                                       "recipe")
    return gendeps, basehash


@pytest.mark.parametrize("conf", ['XEN_REF_XEN_VERSION = "4.19"\n',
                                  'PREFERRED_VERSION_xen-tools = "4.19%"\n'])
def test_the_version_variables_change_the_do_rootfs_signature(project, conf):
    def basehash(extra):
        return task_deps(project.parse("xen-image-minimal", HOST, PKGDATA_CONF + extra))[1][
            "recipe:do_rootfs"]

    assert basehash("") == basehash("")
    assert basehash("") != basehash(conf)


def with_image_bbclass_wiring(d):
    """What oe-core's image.bbclass does with ROOTFS_POSTPROCESS_COMMAND (a stand-in: no oe-core here).

    Its anonymous function sets the variable's vardeps to the functions it names,
    and rootfs_variables() puts the variable into do_rootfs[vardeps].
    """
    d.setVarFlag("ROOTFS_POSTPROCESS_COMMAND", "vardeps", d.getVar("ROOTFS_POSTPROCESS_COMMAND"))
    d.appendVarFlag("do_rootfs", "vardeps", " ROOTFS_POSTPROCESS_COMMAND")
    return d


def test_the_bundling_step_depends_on_what_it_reads(project):
    gendeps, _ = task_deps(with_image_bbclass_wiring(
        project.parse("xen-image-minimal", HOST, PKGDATA_CONF)))
    deps = gendeps["xen_ref_bundle_guests"]
    for name in ("XEN_REF_XEN_VERSION", "PKGDATA_DIR", "PREFERRED_VERSION_xen-tools"):
        assert name in deps, sorted(deps)

    def basehash(conf):
        d = project.parse("xen-image-minimal", HOST, PKGDATA_CONF + conf)
        d.delVarFlag("do_rootfs", "vardeps")      # only what the step itself reads
        with_image_bbclass_wiring(d)
        return task_deps(d)[1]["recipe:do_rootfs"]

    assert basehash("") != basehash('PREFERRED_VERSION_xen-tools = "4.19%"\n')


# ------------------------------------------------------------------ guest: auto-bundle config

def run_guest_task(project, conf):
    d = project.parse("xen-guest-image-minimal", GUEST,
                      'XEN_GUEST_AUTO_BUNDLE = "1"\nXEN_GUEST_VIF = "bridge=xenbr0,vlan=10"\n' + conf)
    os.makedirs(d.getVar("IMGDEPLOYDIR"), exist_ok=True)
    bb.build.exec_func("do_xen_guest_bundle_config", d)
    return Path(d.getVar("IMGDEPLOYDIR"), f"xen-guest-bundle-{GUEST_LINK}.cfg")


def test_guest_config_is_checked_for_the_preferred_xen(project, bblog):
    with pytest.raises(bb.BBHandledException):
        run_guest_task(project, 'PREFERRED_VERSION_xen-tools = "4.18%"\n')
    errors = bblog.text(logging.ERROR)
    assert ("vif keyword `vlan=' was added in Xen 4.19, but the Xen version being built is 4.18"
            in errors), errors
    cfg = run_guest_task(project, 'PREFERRED_VERSION_xen-tools = "4.19%"\n')
    assert "vlan=10" in cfg.read_text()
    cfg = run_guest_task(project, 'XEN_REF_XEN_VERSION = "4.21"\n'
                                  'PREFERRED_VERSION_xen-tools = "4.18%"\n')
    assert "vlan=10" in cfg.read_text()


def test_guest_task_signature_follows_the_version(project):
    def basehash(conf):
        d = project.parse("xen-guest-image-minimal", GUEST, 'XEN_GUEST_AUTO_BUNDLE = "1"\n' + conf)
        return task_deps(d)[1]["recipe:do_xen_guest_bundle_config"]

    assert basehash("") == basehash("")
    assert basehash("") != basehash('PREFERRED_VERSION_xen-tools = "4.19%"\n')
    assert basehash("") != basehash('XEN_REF_XEN_VERSION = "4.19"\n')
