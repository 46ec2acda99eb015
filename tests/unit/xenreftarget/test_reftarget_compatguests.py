"""The reference target's guests of meta-virtualization's forms: the recipe entry and the bundle
package with an imported root-filesystem tarball, through the same calls the build makes.

No network and no Debian packages: a fake busybox package, small kernel and initrd files; the
images are real (``mkfs.ext4 -d``, ``debugfs``), as the import needs them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from xenbundle import xlcfg
from xenbundle.settings import guest_requests
from xenreftarget import all_guests, build, compatguests

DEBUGFS = shutil.which("debugfs", path="/usr/sbin:/sbin:/usr/bin") or "debugfs"
needs_e2fsprogs = pytest.mark.skipif(
    not shutil.which("mkfs.ext4", path="/usr/sbin:/sbin:/usr/bin"),
    reason="e2fsprogs is a declared host requirement; checked by the CLI")


def _cat(image: Path, path: str) -> str:
    return subprocess.run([DEBUGFS, "-R", f"cat {path}", str(image)], check=False,
                          capture_output=True, text=True).stdout


def test_specs_name_the_forms_and_each_guest_has_its_own_name_and_disk():
    specs = {g.form: g for g in compatguests.COMPAT_GUESTS}
    assert set(specs) == {"BUNDLED_XEN_GUESTS", "XEN_GUEST_BUNDLES"}
    assert specs["BUNDLED_XEN_GUESTS"].disk == "xen-guest-image-recipe-qemuarm64.rootfs.ext4"
    assert specs["XEN_GUEST_BUNDLES"].disk == "debian-rootfs-guest.img"
    everything = all_guests()
    assert everything[:len(build.GUESTS)] == build.GUESTS
    assert len({g.name for g in everything}) == len({g.disk for g in everything}) == len(everything)
    # the bundle guest starts through its entry's :autostart, the recipe guest is left for xl create
    assert [g.name for g in compatguests.COMPAT_GUESTS if g.autostart] == ["debian-rootfs-guest"]
    assert "debian-rootfs-guest:autostart" == compatguests.bundle_variables().value("XEN_GUEST_BUNDLES")


@pytest.mark.parametrize("variables, variable", [
    (compatguests.host_variables(), "BUNDLED_XEN_GUESTS"),
    (compatguests.bundle_variables(), "XEN_GUEST_BUNDLES"),
])
def test_local_conf_gives_the_reference_guests_memory_command_line_and_ramdisk(variables, variable):
    (request,) = guest_requests(variables, variable, imports_allowed=True).requests
    assert not request.problems
    assert request.settings is not None
    assert request.settings.memory == build.GUEST_MEMORY_MB == 128
    assert request.settings.extra == build.GUEST_EXTRA and "ip=" not in request.settings.extra
    assert request.ramdisk == build.INITRD
    assert variables.explicit("XEN_GUEST_MEMORY_DEFAULT") == "128"   # meta-virtualization's name


def test_rootfs_tarball_is_dot_relative_owned_by_root_and_keeps_links(tmp_path):
    tree = tmp_path / "tree"
    (tree / "usr/bin").mkdir(parents=True)
    (tree / "usr/bin/busybox").write_text("ELF")
    os.chmod(tree / "usr/bin/busybox", 0o755)
    (tree / "bin").symlink_to("usr/bin")
    compatguests.write_rootfs_tarball(tree, tmp_path / "rootfs.tar.gz")
    with tarfile.open(tmp_path / "rootfs.tar.gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert all(m.uid == m.gid == 0 and m.uname == "root" for m in members.values())
    assert members["./bin"].issym() and members["./bin"].linkname == "usr/bin"
    assert members["./usr/bin/busybox"].mode & 0o777 == 0o755
    assert all(name == "." or name.startswith("./") for name in members)


@pytest.fixture
def world(tmp_path):
    """A deploy folder with the seed forms' files, a fake busybox package and an empty dom0."""
    deploy, root, work = tmp_path / "deploy", tmp_path / "dom0", tmp_path / "work"
    for folder in (deploy, root, work):
        folder.mkdir()
    (deploy / build.KERNEL).write_bytes(b"kernel" * 1000)
    (deploy / build.INITRD).write_bytes(b"initrd" * 100)
    for spec in build.GUESTS:
        (deploy / spec.disk).write_bytes(b"x" * 4096)
        if spec.form == "deploy-config":
            (deploy / spec.config).write_text(build.deploy_config_text(spec, "test"))
        elif spec.form == "auto-bundle":
            (deploy / spec.config).write_text(build._auto_bundle_config(spec))
    busybox = tmp_path / "pkgs/busybox-static"
    (busybox / "bin").mkdir(parents=True)
    (busybox / "bin/busybox").write_text("ELF")
    return deploy, root, work, {"busybox-static": busybox}


@needs_e2fsprogs
def test_build_chain_bundles_every_guest_of_every_form_into_dom0(world):
    deploy, root, work, packages = world
    messages: list[str] = []
    compatguests.guest_images(work, deploy, packages, "4.17", messages.append)
    assert any("imported" in m and "debian-rootfs-guest" in m for m in messages), messages
    compatguests.install_bundle_package(work, root)
    staged = root / "usr/share/xen-guest-bundles/xen-ref-guest-bundle-debian"
    assert sorted(os.listdir(staged)) == ["checksums", "configs", "images", "manifest"]
    assert (staged / "manifest").read_text() == \
        "debian-rootfs-guest:debian-rootfs-guest.img:Image:autostart\n"

    guests = {g["name"]: g for g in build._bundle(root, deploy, lambda m: None, "4.17")}
    assert set(guests) == {g.name for g in all_guests()}
    assert not (root / "usr/share/xen-guest-bundles").exists(), "the staging folder is removed"
    recipe, bundled = guests["xen-guest-image-recipe"], guests["debian-rootfs-guest"]
    assert (recipe["config"], recipe["autostart"]) == ("/etc/xen/xen-guest-image-recipe.cfg", False)
    assert recipe["origin"] == "BUNDLED_XEN_GUESTS entry 1 'xen-guest-image-recipe'"
    assert bundled["config"] == "/etc/xen/debian-rootfs-guest.cfg"
    assert bundled["autostart_link"] == "/etc/xen/auto/debian-rootfs-guest.cfg"
    assert bundled["origin"].startswith("bundle 'xen-ref-guest-bundle-debian' (/usr/share/")
    for spec in all_guests():
        assert guests[spec.name]["disk"] == f"/var/lib/xen/images/{spec.disk}"
        assert guests[spec.name]["autostart"] is spec.autostart
    assert sorted(os.listdir(root / "etc/xen/auto")) == [
        "debian-rootfs-guest.cfg", "xen-guest-bundle-xen-guest-image-autostart-qemuarm64.cfg"]
    for guest in (recipe, bundled):
        settings = xlcfg.parse((root / guest["config"].lstrip("/")).read_text()).settings()
        assert settings["ramdisk"] == f"/var/lib/xen/images/{build.INITRD}"
        assert settings["kernel"] == f"/var/lib/xen/images/{build.KERNEL}"
        assert (settings["memory"], settings["extra"]) == ("128", build.GUEST_EXTRA)
        assert settings["disk"] == [f"file:{guest['disk']},xvda,rw"]
        disk = root / guest["disk"].lstrip("/")
        assert _cat(disk, "/etc/hostname") == f"{guest['name']}\n"
        assert "xen-ref-shutdown" in _cat(disk, "/etc/init.d/rcK")


@needs_e2fsprogs
def test_configs_are_checked_for_the_xen_passed(world, monkeypatch):
    """The Xen version reaches the engine: a 4.19 vif keyword fails a 4.17 dom0."""
    deploy, root, work, packages = world
    compatguests.guest_images(work, deploy, packages, "4.17", lambda m: None)
    compatguests.install_bundle_package(work, root)
    monkeypatch.setattr(compatguests, "local_conf", lambda: {
        "XEN_GUEST_VIF_DEFAULT": "bridge=xenbr0,vlan=10"})
    with pytest.raises(build.BuildError, match="vlan"):
        build._bundle(root, deploy, lambda m: None, "4.17")
