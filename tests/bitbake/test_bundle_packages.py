"""xen-ref-guest-bundle.bbclass (bundle packages) and their merge by xen-ref-bundle, under real BitBake.

A bundle recipe's do_compile (imports) and do_install (the bundle tree) are run with
bb.build.exec_func; the tree is then put where the package manager would install it,
below the host's IMAGE_ROOTFS, and the host's do_rootfs step merges it. The native
tools of the imports are the build host's, linked into a stand-in native sysroot
(STAGING_*_NATIVE), since no e2fsprogs-native or qemu-system-native is built here.
"""

from __future__ import annotations

import io
import logging
import os
import pathlib
import shutil
import subprocess
import tarfile

import bb
import bb.build
import bb.data
import bb.fetch2
import pytest
from xenbundle import xlcfg
from xenref_bbtest import (
    BUNDLE,
    HOST,
    LAYER_RECIPES,
    MiB,
    make_guest_image,
    make_kernel,
    make_sparse,
)

GUEST = "xen-guest-image-minimal"


@pytest.fixture
def deploy(project):
    make_guest_image(project.deploy)
    make_kernel(project.deploy)
    return project.deploy


def native_sysroot(d):
    """STAND-IN native sysroot: the build host's mkfs.ext4, debugfs and qemu-img."""
    for var, name in (("STAGING_SBINDIR_NATIVE", "mkfs.ext4"), ("STAGING_SBINDIR_NATIVE", "debugfs"),
                      ("STAGING_BINDIR_NATIVE", "qemu-img")):
        folder = d.getVar(var)
        os.makedirs(folder, exist_ok=True)
        found = shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
        assert found, f"{name} is needed (scripts/setup-host installs e2fsprogs and qemu-utils)"
        if not os.path.lexists(os.path.join(folder, name)):
            os.symlink(found, os.path.join(folder, name))


def build_bundle(project, name, conf="", body=BUNDLE):
    """Parse a bundle recipe and run do_compile and do_install; returns (datastore, tree)."""
    d = project.parse(name, body, conf)
    native_sysroot(d)
    os.makedirs(d.getVar("UNPACKDIR"), exist_ok=True)
    bb.build.exec_func("do_compile", d)
    bb.build.exec_func("do_install", d)
    return d, d.getVar("D") + d.getVar("XEN_REF_BUNDLE_PATH")


def install_into_host(project, trees, conf=""):
    """A host whose IMAGE_ROOTFS holds the bundle trees as the package manager installs them."""
    d = project.parse("xen-image-minimal", HOST, conf)
    rootfs = d.getVar("IMAGE_ROOTFS")
    staging = os.path.join(rootfs, d.getVar("XEN_REF_BUNDLES_DIR").lstrip("/"))
    os.makedirs(staging)
    for tree in trees:
        shutil.copytree(tree, os.path.join(staging, os.path.basename(tree)), symlinks=True)
    return d, rootfs


def config(rootfs, name):
    return xlcfg.parse_file(os.path.join(rootfs, "etc/xen", name)).settings()


# ------------------------------------------------------------------ parse time


def test_install_waits_for_images_and_kernel_compile_for_tools(project):
    d = project.parse("my-bundle", BUNDLE, f"""\
        XEN_GUEST_BUNDLES = "{GUEST}:autostart vendor:external imported:external"
        XEN_GUEST_SOURCE_TYPE[imported] = "qcow2"
        XEN_GUEST_SOURCE_TYPE[vendor] = "raw"
        """)
    assert sorted(d.getVarFlag("do_install", "depends").split()) == [
        "virtual/kernel:do_deploy", f"{GUEST}:do_image_complete"]
    assert d.getVarFlag("do_compile", "depends").split() == ["qemu-system-native:do_populate_sysroot"]
    assert d.getVar("PACKAGE_ARCH") == "qemuarm64"
    assert d.getVar("FILES:my-bundle").split() == ["/usr/share/xen-guest-bundles/my-bundle"]


def test_no_kernel_dependency_when_every_guest_names_its_kernel(project):
    d = project.parse("my-bundle", BUNDLE, """\
        XEN_GUEST_BUNDLES = "a:external b:external"
        XEN_GUEST_KERNEL[a] = "none"
        XEN_GUEST_KERNEL[b] = "vmlinuz"
        XEN_GUEST_SOURCE_TYPE[a] = "rootfs_dir"
        """)
    assert not (d.getVarFlag("do_install", "depends") or "").split()
    assert d.getVarFlag("do_compile", "depends").split() == ["e2fsprogs-native:do_populate_sysroot"]


@pytest.mark.parametrize("task", ["do_compile", "do_install"])
@pytest.mark.parametrize("change", [
    f'XEN_GUEST_BUNDLES = "{GUEST}:autostart"',
    f'XEN_GUEST_MEMORY[{GUEST}] = "300"',
    f'XEN_GUEST_NAME[{GUEST}] = "mini"',
    'XEN_GUEST_SOURCE_TYPE[v] = "rootfs_dir"',
    'XEN_GUEST_SOURCE_FILE[v] = "other.tar"',
    'XEN_GUEST_IMAGE_SIZE[v] = "64"',
    'XEN_GUEST_IMAGE_SIZE_DEFAULT = "64"',
    'XEN_GUEST_EXTRA_DEFAULT = "ro"',
])
def test_each_variable_and_flag_changes_the_task_signatures(project, task, change):
    def basehash(conf):
        d = project.parse("my-bundle", BUNDLE, conf)
        if d.getVar("__exportlist", False) is None:
            d.setVar("__exportlist", [])
        tasks, gendeps, cache = bb.data.generate_dependencies(d, set())
        return bb.data.generate_dependency_hash(tasks, gendeps, cache, set(), "r")[1][f"r:{task}"]
    base = (f'XEN_GUEST_BUNDLES = "{GUEST} v:external"\nXEN_GUEST_SOURCE_TYPE[v] = "raw"\n'
            'XEN_GUEST_SOURCE_FILE[v] = "v.img"\n')
    assert basehash(base) == basehash(base)
    assert basehash(base) != basehash(base + change + "\n")


def test_external_deploy_dir_files_are_checksummed(project, deploy):
    make_sparse(project.deploy / "vendor-qemuarm64.rootfs.ext4", MiB)
    d = project.parse("my-bundle", BUNDLE, f'XEN_GUEST_BUNDLES = "{GUEST} vendor:external"\n')
    dep = project.deploy
    assert sorted(d.getVarFlag("do_install", "file-checksums").split()) == [
        f"{dep}/vendor-qemuarm64.ext4:False", f"{dep}/vendor-qemuarm64.rootfs.ext4:True"]


# ------------------------------------------------------------------ the package and the merge


def test_bundle_package_is_built_and_merged(project, deploy, bblog):
    _b, tree = build_bundle(project, "my-bundle", f"""\
        XEN_GUEST_BUNDLES = "{GUEST}:autostart"
        XEN_GUEST_MEMORY[{GUEST}] = "256"
        """)
    assert sorted(os.listdir(tree)) == ["checksums", "configs", "images", "manifest"]
    assert pathlib.Path(os.path.join(tree, "manifest")).read_text() == \
        f"{GUEST}:{GUEST}-qemuarm64.rootfs.ext4:Image:autostart\n"
    d, rootfs = install_into_host(project, [tree])
    bb.build.exec_func("do_rootfs", d)
    s = config(rootfs, f"{GUEST}.cfg")
    assert s["memory"] == "256"
    assert s["disk"] == [f"file:/var/lib/xen/images/{GUEST}-qemuarm64.rootfs.ext4,xvda,rw"]
    assert os.readlink(os.path.join(rootfs, f"etc/xen/auto/{GUEST}.cfg")) == f"../{GUEST}.cfg"
    assert not os.path.exists(os.path.join(rootfs, "usr/share/xen-guest-bundles"))
    assert "removed the bundle staging folder /usr/share/xen-guest-bundles" in bblog.text()


def test_a_bundle_and_the_hosts_own_entry_for_one_guest(project, deploy, bblog):
    _b, tree = build_bundle(project, "my-bundle", f'XEN_GUEST_BUNDLES = "{GUEST}"\n')
    d, rootfs = install_into_host(project, [tree], f'BUNDLED_XEN_GUESTS = "{GUEST}"\n')
    with pytest.raises(bb.BBHandledException):
        bb.build.exec_func("do_rootfs", d)
    errors = bblog.text(logging.ERROR)
    assert f"domain name '{GUEST}' is also used by guest '{GUEST}' (BUNDLED_XEN_GUESTS entry 1" in errors
    assert "bundle 'my-bundle'" in errors
    assert os.path.isdir(os.path.join(rootfs, "usr/share/xen-guest-bundles/my-bundle")), \
        "a failed merge leaves the rootfs as it was"


def test_a_damaged_package_stops_the_host(project, deploy, bblog):
    _b, tree = build_bundle(project, "my-bundle", f'XEN_GUEST_BUNDLES = "{GUEST}"\n')
    d, rootfs = install_into_host(project, [tree])
    staged = os.path.join(rootfs, "usr/share/xen-guest-bundles/my-bundle")
    with open(os.path.join(staged, "configs", f"{GUEST}.cfg"), "a") as cfg:
        cfg.write('on_crash = "restart"\n')
    with pytest.raises(bb.BBHandledException):
        bb.build.exec_func("do_rootfs", d)
    assert (f"bundle 'my-bundle' (/usr/share/xen-guest-bundles/my-bundle/configs/{GUEST}.cfg) "
            "does not match its checksum (checksums:") in bblog.text(logging.ERROR)


def test_an_empty_bundle_recipe_fails(project, deploy, bblog):
    with pytest.raises(bb.BBHandledException):
        build_bundle(project, "my-bundle", "")
    assert "XEN_GUEST_BUNDLES names no guest" in bblog.text(logging.ERROR)


# ------------------------------------------------------------------ imports


def minirootfs(path, owner_uid=0):
    with tarfile.open(path, "w:gz") as archive:
        for name, kind, data, mode in (("./", tarfile.DIRTYPE, b"", 0o755),
                                       ("./bin", tarfile.DIRTYPE, b"", 0o755),
                                       ("./bin/busybox", tarfile.REGTYPE, b"\x7fELF", 0o4755),
                                       ("./bin/sh", tarfile.SYMTYPE, b"", 0o777),
                                       ("./etc/hostname", tarfile.REGTYPE, b"guest\n", 0o644)):
            info = tarfile.TarInfo(name)
            info.type, info.size, info.mode, info.uid = kind, len(data), mode, owner_uid
            info.linkname = "busybox" if kind == tarfile.SYMTYPE else ""
            archive.addfile(info, io.BytesIO(data) if data else None)


def debugfs_stat(image, path):
    return subprocess.run([shutil.which("debugfs", path="/usr/sbin:/sbin"), "-R", f"stat {path}",
                           image], capture_output=True, text=True, check=True).stdout


def test_our_alpine_recipe_imports_a_local_tarball(project, deploy):
    """recipes-extended/xen-guest-bundles/xen-ref-alpine-bundle: SRC_URI replaced by a local file://."""
    tarball = project.top / "alpine-minirootfs-3.23.3-aarch64.tar.gz"
    minirootfs(tarball)
    recipe = LAYER_RECIPES / "xen-guest-bundles" / "xen-ref-alpine-bundle_3.23.3.bb"
    d = project.parse_file(recipe, f'SRC_URI:pn-xen-ref-alpine-bundle = "file://{tarball.name};unpack=0"\n'
                                   f'FILESPATH = "{project.top}"\nDL_DIR = "{project.top}/downloads"\n')
    assert d.getVar("XEN_GUEST_SOURCE_FILE", False) is None
    assert d.getVarFlag("XEN_GUEST_SOURCE_FILE", "alpine") == tarball.name
    # The real fetcher puts the archive into UNPACKDIR, as do_fetch/do_unpack would.
    fetcher = bb.fetch2.Fetch(d.getVar("SRC_URI").split(), d)
    fetcher.download()
    os.makedirs(d.getVar("UNPACKDIR"))
    fetcher.unpack(d.getVar("UNPACKDIR"))
    native_sysroot(d)
    bb.build.exec_func("do_compile", d)
    bb.build.exec_func("do_install", d)
    tree = d.getVar("D") + d.getVar("XEN_REF_BUNDLE_PATH")
    assert pathlib.Path(os.path.join(tree, "manifest")).read_text() == "alpine:alpine.img:Image:autostart\n"
    assert "Mode:  04755" in debugfs_stat(os.path.join(tree, "images/alpine.img"), "/bin/busybox")
    host, rootfs = install_into_host(project, [tree])
    bb.build.exec_func("do_rootfs", host)
    s = config(rootfs, "alpine.cfg")
    assert (s["name"], s["memory"]) == ("alpine", "256")
    assert s["extra"] == "root=/dev/xvda rw console=hvc0 init=/bin/sh"
    assert s["disk"] == ["file:/var/lib/xen/images/alpine.img,xvda,rw"]
    assert os.path.islink(os.path.join(rootfs, "etc/xen/auto/alpine.cfg"))


def test_alpine_recipe_declares_checksummed_sources(project):
    recipe = LAYER_RECIPES / "xen-guest-bundles" / "xen-ref-alpine-bundle_3.23.3.bb"
    for arch, override in (("aarch64", ""), ("x86_64", 'OVERRIDES .= ":x86-64"\nTARGET_ARCH = "x86_64"\n')):
        d = project.parse_file(recipe, override)
        (url,) = d.getVar("SRC_URI").split()
        scheme, host, path, _user, _password, params = bb.fetch2.decodeurl(url)
        assert (scheme, host) == ("https", "dl-cdn.alpinelinux.org")
        assert path == f"/alpine/v3.23/releases/{arch}/alpine-minirootfs-3.23.3-{arch}.tar.gz"
        assert params == {"unpack": "0", "name": arch}
        assert len(d.getVarFlag("SRC_URI", f"{arch}.sha256sum")) == 64


@pytest.mark.parametrize("conf, check", [
    ('XEN_GUEST_SOURCE_TYPE[t] = "rootfs_dir"\nXEN_GUEST_SOURCE_FILE[t] = "rootfs"', "folder"),
    (('XEN_GUEST_SOURCE_TYPE[t] = "rootfs_dir"\nXEN_GUEST_SOURCE_FILE[t] = "rootfs.tar.gz"\n'
     'XEN_GUEST_IMAGE_SIZE[t] = "40"'), 40 * MiB),
    (('XEN_GUEST_SOURCE_TYPE[t] = "rootfs_dir"\nXEN_GUEST_SOURCE_FILE[t] = "rootfs.tar.gz"\n'
     'XEN_GUEST_IMAGE_SIZE_DEFAULT = "33"'), 33 * MiB),
    ('XEN_GUEST_SOURCE_TYPE[t] = "qcow2"\nXEN_GUEST_SOURCE_FILE[t] = "disk.qcow2"', 8 * MiB),
    ('XEN_GUEST_SOURCE_TYPE[t] = "ext4"\nXEN_GUEST_SOURCE_FILE[t] = "fs.ext4"', 4 * MiB),
    ('XEN_GUEST_SOURCE_TYPE[t] = "raw"\nXEN_GUEST_SOURCE_FILE[t] = "disk.raw"', 8 * MiB),
])
def test_each_import_type(project, deploy, conf, check):
    d = project.parse("my-bundle", BUNDLE, 'XEN_GUEST_BUNDLES = "t:external"\n' + conf + "\n")
    unpack = d.getVar("UNPACKDIR")
    os.makedirs(os.path.join(unpack, "rootfs/etc"))
    with open(os.path.join(unpack, "rootfs/etc/hostname"), "w") as f:
        f.write("t\n")
    minirootfs(os.path.join(unpack, "rootfs.tar.gz"))
    make_sparse(os.path.join(unpack, "disk.raw"), 8 * MiB, b"raw disk")
    subprocess.run([shutil.which("qemu-img"), "convert", "-O", "qcow2", os.path.join(unpack, "disk.raw"),
                    os.path.join(unpack, "disk.qcow2")], check=True)
    subprocess.run([shutil.which("mkfs.ext4", path="/usr/sbin:/sbin"), "-q", "-F",
                    os.path.join(unpack, "fs.ext4"), "4M"], check=True, capture_output=True)
    native_sysroot(d)
    bb.build.exec_func("do_compile", d)
    image = os.path.join(d.getVar("XEN_REF_IMPORT_DIR"), "t.img")
    if check == "folder":
        assert "User:     0" in debugfs_stat(image, "/etc/hostname")
    else:
        assert os.path.getsize(image) == check
    bb.build.exec_func("do_install", d)
    tree = d.getVar("D") + d.getVar("XEN_REF_BUNDLE_PATH")
    assert sorted(os.listdir(os.path.join(tree, "images"))) == ["Image", "t.img"]


def test_an_import_size_too_small_stops_do_compile(project, deploy, bblog):
    d = project.parse("my-bundle", BUNDLE, """\
        XEN_GUEST_BUNDLES = "t:external"
        XEN_GUEST_SOURCE_TYPE[t] = "rootfs_dir"
        XEN_GUEST_SOURCE_FILE[t] = "rootfs"
        XEN_GUEST_IMAGE_SIZE[t] = "4"
        """)
    folder = os.path.join(d.getVar("UNPACKDIR"), "rootfs")
    os.makedirs(folder)
    with open(os.path.join(folder, "blob"), "wb") as f:
        f.write(os.urandom(6 * MiB))
    native_sysroot(d)
    with pytest.raises(bb.BBHandledException):
        bb.build.exec_func("do_compile", d)
    assert 'XEN_GUEST_IMAGE_SIZE[t] = "4" (MiB) is too small for the root filesystem' \
        in bblog.text(logging.ERROR)
