"""meta-virtualization's own guest bundling, run under real BitBake, merged by our host.

meta-virtualization's xen-guest-bundle.bbclass and its example bundle recipes
(recipes-extended/xen-guest-bundles/) are parsed from its wrynose and master branches
(conftest.py: meta_virt_layers; read from a checkout or extracted from the snapshot
into a temporary folder, never copied into this repository). Their do_compile and
do_install shell tasks run with bb.build.exec_func (with a stand-in for oe-core's
bbnote/bbwarn/bbfatal, stub-layer/classes/logging.bbclass), which writes the package
tree their packages carry. That tree is put below the host's IMAGE_ROOTFS as the
package manager installs it, and xen-ref-bundle's do_rootfs step merges it.
"""

from __future__ import annotations

import logging
import os
import shutil

import bb
import bb.build
import pytest
from xenbundle import xlcfg
from xenref_bbtest import HOST, make_guest_image, make_kernel

pytestmark = pytest.mark.oecore

GUEST = "xen-guest-image-minimal"
BUNDLES = "recipes-extended/xen-guest-bundles"


@pytest.fixture
def deploy(project):
    make_guest_image(project.deploy)
    make_kernel(project.deploy)
    return project.deploy


def their_bundle(project, layer, recipe, conf="", prepare=None):
    """Parse one of their bundle recipes and run their do_compile and do_install."""
    path = next((layer / BUNDLES).glob(f"{recipe}_*.bb"))
    d = project.parse_file(path, conf, layers=(layer,))
    if prepare:
        prepare(d)
    bb.build.exec_func("do_compile", d)
    bb.build.exec_func("do_install", d)
    return d, os.path.join(d.getVar("D") + d.getVar("datadir"), "xen-guest-bundles", recipe)


def unpacked_alpine(d):
    """What their SRC_URI (subdir=alpine-rootfs) unpacks: a small root filesystem folder."""
    root = os.path.join(d.getVar("UNPACKDIR"), "alpine-rootfs")
    for folder in ("bin", "etc", "sbin"):
        os.makedirs(os.path.join(root, folder))
    with open(os.path.join(root, "etc/hostname"), "w") as f:
        f.write("alpine\n")
    os.symlink("/bin/busybox", os.path.join(root, "sbin/init"))


def merge(project, trees, conf=""):
    d = project.parse("xen-image-minimal", HOST, conf)
    rootfs = d.getVar("IMAGE_ROOTFS")
    staging = os.path.join(rootfs, "usr/share/xen-guest-bundles")
    os.makedirs(staging)
    for tree in trees:
        shutil.copytree(tree, os.path.join(staging, os.path.basename(tree)), symlinks=True)
    bb.build.exec_func("do_rootfs", d)
    return rootfs


def config(rootfs, name):
    return xlcfg.parse_file(os.path.join(rootfs, "etc/xen", name)).settings()


def test_their_classes_are_the_same_on_wrynose_and_master(meta_virt_layers):
    texts = {name: tuple((layer / f).read_text() for f in (
        "classes/xen-guest-bundle.bbclass", "classes/xen-guest-cross-install.bbclass"))
        for name, layer in meta_virt_layers}
    assert len(set(texts.values())) == 1, f"the classes differ between {sorted(texts)}: " \
        "re-read them and update xenbundle (docs/bundling.md, migration table)"


def test_their_example_bundles_are_merged(project, deploy, meta_virt_layers, bblog):
    for name, layer in meta_virt_layers:
        example, example_tree = their_bundle(project, layer, "example-xen-guest-bundle")
        assert f"{GUEST}:do_image_complete" in example.getVarFlag("do_compile", "depends")
        _alpine, alpine_tree = their_bundle(project, layer, "alpine-xen-guest-bundle",
                                           prepare=unpacked_alpine)
        rootfs = merge(project, [example_tree, alpine_tree])

        mini = config(rootfs, f"{GUEST}.cfg")
        assert mini["memory"] == "1024", name          # their XEN_GUEST_MEMORY[<recipe>]
        assert mini["disk"] == [f"file:/var/lib/xen/images/{GUEST}-qemuarm64.rootfs.ext4,xvda,rw"]
        assert mini["kernel"] == "/var/lib/xen/images/Image"
        a = config(rootfs, "alpine.cfg")
        assert (a["memory"], a["disk"]) == ("256", ["file:/var/lib/xen/images/alpine.img,xvda,rw"])
        assert sorted(os.listdir(os.path.join(rootfs, "etc/xen/auto"))) == ["alpine.cfg", f"{GUEST}.cfg"]
        assert sorted(os.listdir(os.path.join(rootfs, "var/lib/xen/images"))) == [
            "Image", "alpine.img", f"{GUEST}-qemuarm64.rootfs.ext4"]
        assert not os.path.exists(os.path.join(rootfs, "usr/share/xen-guest-bundles")), name
        assert "bundle 'alpine-xen-guest-bundle'" in bblog.text()
        shutil.rmtree(project.top / "tmp" / "work")


def test_their_custom_config_bundle_is_validated(project, deploy, meta_virt_layers, bblog):
    """Their sed rewrite of XEN_GUEST_CONFIG_FILE keeps the other references as written:
    a ramdisk the bundle does not carry is reported, naming the bundle, file and line."""
    _name, layer = meta_virt_layers[0]

    def custom(d):
        os.makedirs(d.getVar("UNPACKDIR"), exist_ok=True)
        with open(os.path.join(d.getVar("UNPACKDIR"), "custom.cfg"), "w") as f:
            f.write('name = "custom"\nmemory = 64\n'
                    "disk = ['file:/x.img,xvda,rw']\n"
                    'kernel = "/x"\nramdisk = "/boot/initrd.img"\n')

    _d, tree = their_bundle(project, layer, "example-xen-guest-bundle",
                            f'XEN_GUEST_CONFIG_FILE[{GUEST}] = "${{UNPACKDIR}}/custom.cfg"\n', custom)
    with pytest.raises(bb.BBHandledException):
        merge(project, [tree])
    errors = bblog.text(logging.ERROR)
    assert (f"bundle 'example-xen-guest-bundle' (/usr/share/xen-guest-bundles/example-xen-guest-bundle/"
            f"configs/{GUEST}.cfg:5): '/boot/initrd.img' is not a file of the bundle") in errors


def test_their_recipes_parse_with_their_class(project, meta_virt_layers):
    for _name, layer in meta_virt_layers:
        recipes = sorted((layer / BUNDLES).glob("*.bb"))
        assert [r.name.split("_")[0] for r in recipes] == [
            "alpine-xen-guest-bundle", "example-xen-guest-bundle"]
        for recipe in recipes:
            d = project.parse_file(recipe, layers=(layer,))
            assert d.getVar("__SKIPPED") is None
            assert d.getVar("FILES:" + d.getVar("PN")) == "/usr/share/xen-guest-bundles"


def test_a_host_inheriting_their_cross_install_too_is_skipped(project, meta_virt_layers):
    _name, layer = meta_virt_layers[0]
    recipe = project.top / "recipes" / "double-host.bb"
    recipe.write_text("inherit xen-guest-cross-install xen-ref-bundle\n")
    d = project.parse_file(recipe, layers=(layer,))
    skipped = d.getVar("__SKIPPED")
    assert "inherits both xen-ref-bundle and meta-virtualization's xen-guest-cross-install" in skipped
