"""Tests of the recipe form (BUNDLED_XEN_GUESTS entries) through plan_bundle/bundle_guests.

The same forms run under real BitBake in tests/bitbake/test_recipe_form.py; here the
file resolution and the config handling are checked on temporary folders.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from xenbundle import BundleError, bundle_guests, plan_bundle
from xenbundle.disk import parse_disk
from xenbundle.recipeguests import RecipeGuests
from xenbundle.settings import MappingVariables
from xenbundle.xlcfg import parse

MiB = 1 << 20


def sparse(path: Path, size: int, data: bytes = b"data") -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.truncate(size)


@pytest.fixture
def deploy(tmp_path: Path) -> Path:
    d = tmp_path / "deploy"
    d.mkdir()
    sparse(d / "web-qemuarm64.rootfs-1.ext4", 32 * MiB, b"web")
    (d / "web-qemuarm64.rootfs.ext4").symlink_to("web-qemuarm64.rootfs-1.ext4")
    (d / "Image-6.6.bin").write_bytes(b"kernel")
    (d / "Image").symlink_to("Image-6.6.bin")
    return d


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    r = tmp_path / "rootfs"
    r.mkdir()
    return r


@pytest.fixture
def unpack(tmp_path: Path) -> Path:
    u = tmp_path / "sources"
    u.mkdir()
    return u


def guests(value, flags=None, values=None, unpack=None, hvm=False):
    variables = MappingVariables({"BUNDLED_XEN_GUESTS": value, **(values or {})}, flags)
    return RecipeGuests(variables, "BUNDLED_XEN_GUESTS", machine="qemuarm64",
                        kernel_imagetype="Image", unpack_dir=str(unpack) if unpack else None,
                        hvm=hvm)


def plan_problems(deploy, rootfs, recipe_guests, **kwargs):
    with pytest.raises(BundleError) as info:
        plan_bundle(str(rootfs), str(deploy), recipe_guests=recipe_guests, **kwargs)
    return info.value.problems


def settings_of(rootfs: Path, name: str) -> dict:
    return parse((rootfs / "etc/xen" / name).read_text()).settings()


def test_entry_is_generated_installed_and_autostarted(deploy, rootfs):
    result = bundle_guests(str(rootfs), str(deploy), recipe_guests=guests("web:autostart"),
                           log=lambda _m: None)
    (guest,) = result.guests
    assert (guest.name, guest.config) == ("web", "etc/xen/web.cfg")
    s = settings_of(rootfs, "web.cfg")
    assert s["kernel"] == "/var/lib/xen/images/Image"
    assert s["disk"] == ["file:/var/lib/xen/images/web-qemuarm64.rootfs.ext4,xvda,rw"]
    assert os.readlink(rootfs / "etc/xen/auto/web.cfg") == "../web.cfg"
    copied = rootfs / "var/lib/xen/images/web-qemuarm64.rootfs.ext4"
    assert copied.stat().st_size == 32 * MiB and copied.stat().st_blocks * 512 < MiB


def test_older_naming_without_rootfs_is_found(deploy, rootfs):
    sparse(deploy / "old-qemuarm64.ext4", MiB)
    plan = plan_bundle(str(rootfs), str(deploy), recipe_guests=guests("old"))
    assert plan.guests[0].copies[1].reference == "old-qemuarm64.ext4"


def test_both_namings_present_is_an_error(deploy, rootfs):
    sparse(deploy / "web-qemuarm64.ext4", MiB)
    (problem,) = plan_problems(deploy, rootfs, guests("web"))
    assert "both 'web-qemuarm64.ext4' and 'web-qemuarm64.rootfs.ext4' are in the deploy" in problem
    assert "XEN_GUEST_ROOTFS[web]" in problem


def test_missing_rootfs_lists_what_was_looked_for(deploy, rootfs):
    (problem,) = plan_problems(deploy, rootfs, guests("nope:external"))
    assert problem.startswith("guest 'nope' (BUNDLED_XEN_GUESTS entry 1 'nope:external'): no rootfs")
    assert "neither 'nope-qemuarm64.ext4' nor 'nope-qemuarm64.rootfs.ext4'" in problem


def test_image_fstype_and_qcow2_disks(deploy, rootfs):
    sparse(deploy / "web-qemuarm64.rootfs.ext4.qcow2", MiB)
    plan = plan_bundle(str(rootfs), str(deploy), recipe_guests=guests(
        "web", {"XEN_GUEST_IMAGE_FSTYPE": {"web": "ext4.qcow2"}}))
    disk = parse_disk(parse(plan.guests[0].text).get("disk")[0])
    assert (disk.format, disk.target) == ("qcow2", "/var/lib/xen/images/web-qemuarm64.rootfs.ext4.qcow2")


def test_rootfs_kernel_name_and_settings_flags(deploy, rootfs):
    sparse(deploy / "vendor.img", MiB)
    (deploy / "vendor-kernel").write_bytes(b"k")
    plan = plan_bundle(str(rootfs), str(deploy), recipe_guests=guests("vendor:external", {
        "XEN_GUEST_ROOTFS": {"vendor": "vendor.img"}, "XEN_GUEST_KERNEL": {"vendor": "vendor-kernel"},
        "XEN_GUEST_NAME": {"vendor": "appliance"}, "XEN_GUEST_MEMORY": {"vendor": "128"},
        "XEN_GUEST_VCPUS": {"appliance": "2"}, "XEN_GUEST_VIF": {"vendor": "bridge=xenbr1"},
        "XEN_GUEST_EXTRA": {"vendor": "console=hvc0"}, "XEN_GUEST_DISK_DEVICE": {"vendor": "xvdb"}}))
    (guest,) = plan.guests
    s = parse(guest.text).settings()
    assert (guest.name, guest.config_name) == ("appliance", "vendor.cfg")
    assert (s["name"], s["memory"], s["vcpus"], s["vif"], s["extra"]) == \
        ("appliance", "128", "2", ["bridge=xenbr1"], "console=hvc0")
    assert s["disk"] == ["file:/var/lib/xen/images/vendor.img,xvdb,rw"]
    assert s["kernel"] == "/var/lib/xen/images/vendor-kernel"
    assert (guest.rootfs_file, guest.kernel_file) == ("vendor.img", "vendor-kernel")


def test_kernel_from_unpackdir_and_ambiguity(deploy, rootfs, unpack):
    (unpack / "zImage").write_bytes(b"fetched kernel")
    plan = plan_bundle(str(rootfs), str(deploy), recipe_guests=guests(
        "web", {"XEN_GUEST_KERNEL": {"web": "zImage"}}, unpack=unpack))
    assert plan.guests[0].copies[0].source == str(unpack / "zImage")
    (deploy / "zImage").write_bytes(b"deployed kernel")
    (problem,) = plan_problems(deploy, rootfs, guests(
        "web", {"XEN_GUEST_KERNEL": {"web": "zImage"}}, unpack=unpack))
    assert "XEN_GUEST_KERNEL[web] = \"zImage\": both of" in problem and "${UNPACKDIR}" in problem


def test_absolute_paths_must_be_fetched_or_deployed(deploy, rootfs, tmp_path):
    (tmp_path / "elsewhere").write_bytes(b"k")
    (problem,) = plan_problems(deploy, rootfs, guests(
        "web", {"XEN_GUEST_KERNEL": {"web": str(tmp_path / "elsewhere")}}))
    assert "is outside the deploy directory and UNPACKDIR" in problem


def test_no_kernel_is_hvm_on_x86_and_an_error_on_arm(deploy, rootfs):
    flags = {"XEN_GUEST_KERNEL": {"web": "none"}}
    plan = plan_bundle(str(rootfs), str(deploy), recipe_guests=guests("web", flags, hvm=True))
    s = parse(plan.guests[0].text).settings()
    assert s["type"] == "hvm" and "kernel" not in s and "extra" not in s
    assert plan.guests[0].kernel_file is None
    (problem,) = plan_problems(deploy, rootfs, guests("web", flags))
    assert 'XEN_GUEST_KERNEL[web] = "none" means an HVM guest' in problem


# ------------------------------------------------------------------ XEN_GUEST_RAMDISK (ours)


def test_ramdisk_plain_for_every_entry_varflag_per_entry(deploy, rootfs, unpack):
    """XEN_GUEST_RAMDISK (meta-xen-ref's own) adds a ramdisk to generated configs: the plain
    value for every entry, the entry's varflag over it, "none" for no ramdisk."""
    (deploy / "initrd.cpio.gz").write_bytes(b"initrd")
    (unpack / "fetched.cpio.gz").write_bytes(b"fetched initrd")
    sparse(deploy / "db-qemuarm64.rootfs.ext4", MiB, b"db")
    sparse(deploy / "bare-qemuarm64.rootfs.ext4", MiB, b"bare")
    result = bundle_guests(str(rootfs), str(deploy), log=lambda _m: None, recipe_guests=guests(
        "web db bare", {"XEN_GUEST_RAMDISK": {"db": "fetched.cpio.gz", "bare": "none"}},
        {"XEN_GUEST_RAMDISK": "initrd.cpio.gz"}, unpack=unpack))
    assert [g.name for g in result.guests] == ["web", "db", "bare"]
    assert settings_of(rootfs, "web.cfg")["ramdisk"] == "/var/lib/xen/images/initrd.cpio.gz"
    assert settings_of(rootfs, "db.cfg")["ramdisk"] == "/var/lib/xen/images/fetched.cpio.gz"
    assert "ramdisk" not in settings_of(rootfs, "bare.cfg")
    assert (rootfs / "var/lib/xen/images/fetched.cpio.gz").read_bytes() == b"fetched initrd"


@pytest.mark.parametrize("flags, values, hvm, message", [
    ({"XEN_GUEST_RAMDISK": {"web": "nope.gz"}}, {}, False,
     'XEN_GUEST_RAMDISK[web] = "nope.gz": neither of'),
    ({}, {"XEN_GUEST_RAMDISK": "nope.gz"}, False, 'XEN_GUEST_RAMDISK = "nope.gz": neither of'),
    ({"XEN_GUEST_RAMDISK": {"web": "/elsewhere/initrd"}}, {}, False,
     "is outside the deploy directory and UNPACKDIR"),
    ({"XEN_GUEST_RAMDISK": {"web": "Image"}, "XEN_GUEST_KERNEL": {"web": "none"}}, {}, True,
     'XEN_GUEST_KERNEL[web] = "none": a guest without kernel boots from its disk'),
])
def test_ramdisk_problems(deploy, rootfs, flags, values, hvm, message):
    found = plan_problems(deploy, rootfs, guests("web", flags, values, hvm=hvm))
    assert any(message in p for p in found), found
    assert all(p.startswith("guest 'web' (BUNDLED_XEN_GUESTS entry 1 'web')") for p in found)


def test_ramdisk_varflag_with_a_custom_config_is_an_error(deploy, rootfs, unpack):
    (deploy / "initrd.cpio.gz").write_bytes(b"initrd")
    (unpack / "web.cfg").write_text('name = "web"\ndisk = ["file:x,xvda,rw"]\n')
    found = plan_problems(deploy, rootfs, guests("web", {
        "XEN_GUEST_CONFIG_FILE": {"web": "web.cfg"}, "XEN_GUEST_RAMDISK": {"web": "initrd.cpio.gz"}},
        unpack=unpack))
    assert any("XEN_GUEST_RAMDISK[web] would be ignored" in p for p in found), found


CUSTOM = """# hand-written
name = "web"
type = "pvh"
memory = 300
kernel = "placeholder"
disk = [ 'format=raw, vdev=xvda, access=rw, target=placeholder.img',
         'phy:/dev/sdb,xvdb,r' ]
on_crash = "preserve"
"""


def test_custom_config_is_validated_and_rewritten(deploy, rootfs, unpack):
    (unpack / "web.cfg").write_text(CUSTOM)
    bundle_guests(str(rootfs), str(deploy), log=lambda _m: None, recipe_guests=guests(
        "web:autostart", {"XEN_GUEST_CONFIG_FILE": {"web": "web.cfg"}}, unpack=unpack))
    text = (rootfs / "etc/xen/web.cfg").read_text()
    assert text.startswith("# hand-written\n") and 'on_crash = "preserve"' in text
    s = parse(text).settings()
    assert s["memory"] == "300" and s["kernel"] == "/var/lib/xen/images/Image"
    assert s["disk"] == [("format=raw, vdev=xvda, access=rw, target=/var/lib/xen/images/"
                         "web-qemuarm64.rootfs.ext4"), "phy:/dev/sdb,xvdb,r"]


@pytest.mark.parametrize("text, flags, message", [
    ('name = "other"\ndisk = ["file:x,xvda,rw"]\n', {"XEN_GUEST_NAME": {"web": "web2"}},
     'XEN_GUEST_NAME[web] = "web2" and name = "other" in'),
    ('name = "web"\ndisk = ["file:x,xvda,rw"]\n', {"XEN_GUEST_MEMORY": {"web": "64"}},
     "XEN_GUEST_MEMORY[web] would be ignored: XEN_GUEST_CONFIG_FILE[web] replaces"),
    ('name = "web"\n', {}, "the config has no disk list"),
    ('name = "web"\ndisk = ["qcow2:x,xvda,rw"]\n', {},
     "the first disk has format qcow2, but the rootfs 'web-qemuarm64.rootfs.ext4' is raw"),
    ('name = "web"\nmemory = = 3\n', {}, ":2: "),
    ('name = "web"\ndisk = ["file:x,xvda,rw"]\nkernel = "k"\n', {"XEN_GUEST_KERNEL": {"web": "none"}},
     'sets a kernel, but XEN_GUEST_KERNEL[web] = "none"'),
])
def test_custom_config_problems(deploy, rootfs, unpack, text, flags, message):
    (unpack / "web.cfg").write_text(text)
    flags = dict(flags, XEN_GUEST_CONFIG_FILE={"web": "web.cfg"})
    found = plan_problems(deploy, rootfs, guests("web", flags, unpack=unpack, hvm=True))
    assert any(message in p for p in found), found
    assert all(p.startswith("guest 'web") for p in found)


def test_custom_config_name_gives_the_domain(deploy, rootfs, unpack):
    (unpack / "web.cfg").write_text('name = "www"\ndisk = ["file:x,xvda,rw"]\n')
    plan = plan_bundle(str(rootfs), str(deploy), recipe_guests=guests(
        "web", {"XEN_GUEST_CONFIG_FILE": {"web": "web.cfg"}}, unpack=unpack))
    assert (plan.guests[0].name, plan.guests[0].config_name) == ("www", "web.cfg")


def test_missing_custom_config(deploy, rootfs, unpack):
    (problem,) = plan_problems(deploy, rootfs, guests(
        "web", {"XEN_GUEST_CONFIG_FILE": {"web": "nope.cfg"}}, unpack=unpack))
    assert 'XEN_GUEST_CONFIG_FILE[web] = "nope.cfg"' in problem and "does not exist" in problem


def test_import_on_the_host_is_an_error(deploy, rootfs):
    found = plan_problems(deploy, rootfs, guests("alpine:external", {
        "XEN_GUEST_SOURCE_TYPE": {"alpine": "rootfs_dir"},
        "XEN_GUEST_SOURCE_FILE": {"alpine": "a.tar"}}))
    assert any("move the guest into a bundle recipe" in p for p in found)


# ------------------------------------------------------------------ two forms, one guest


def test_same_image_by_two_forms_is_an_error_naming_both(deploy, rootfs):
    found = plan_problems(deploy, rootfs, guests("web"),
                          bundled_guests="web-qemuarm64.rootfs.ext4:Image")
    (problem,) = [p for p in found if "writable disk" in p]
    assert "guest 'web' (BUNDLED_XEN_GUESTS entry 1 'web')" in problem
    assert "XEN_BUNDLED_GUESTS entry 1 'web-qemuarm64.rootfs.ext4:Image'" in problem


def test_same_domain_by_entry_and_deploy_config_is_an_error(deploy, rootfs):
    sparse(deploy / "other.img", MiB)
    (deploy / "xen-guest-bundle-web.cfg").write_text(
        'name = "web"\nkernel = "Image"\ndisk = ["file:other.img,xvda,rw"]\n')
    (problem,) = plan_problems(deploy, rootfs, guests("web"))
    assert "domain name 'web' is also used by guest 'web' (BUNDLED_XEN_GUESTS entry 1 'web')" \
        in problem
    assert "xen-guest-bundle-web.cfg" in problem


def test_shared_read_only_disks_are_fine(deploy, rootfs):
    (deploy / "xen-guest-bundle-ro.cfg").write_text(
        'name = "ro"\nkernel = "Image"\ndisk = ["file:web-qemuarm64.rootfs.ext4,xvda,r"]\n')
    (deploy / "xen-guest-bundle-ro2.cfg").write_text(
        'name = "ro2"\nkernel = "Image"\ndisk = ["file:web-qemuarm64.rootfs.ext4,xvda,r"]\n')
    plan = plan_bundle(str(rootfs), str(deploy))
    assert [g.name for g in plan.guests] == ["ro", "ro2"]


@pytest.mark.parametrize("kind", ["dangling link", "fifo"])
def test_ramdisk_that_is_not_a_regular_file_is_an_error_and_nothing_is_written(deploy, rootfs, kind):
    """Hostile deploy directories: the named ramdisk is a dangling link or a FIFO (never opened)."""
    ramdisk = deploy / "initrd.cpio.gz"
    if kind == "fifo":
        os.mkfifo(ramdisk)
    else:
        ramdisk.symlink_to("/nonexistent/initrd")
    before = sorted(str(p) for p in rootfs.rglob("*"))
    with pytest.raises(BundleError) as info:
        bundle_guests(str(rootfs), str(deploy), log=lambda _m: None, recipe_guests=guests(
            "web", {}, {"XEN_GUEST_RAMDISK": "initrd.cpio.gz"}))
    assert any("initrd.cpio.gz" in p for p in info.value.problems), info.value.problems
    assert sorted(str(p) for p in rootfs.rglob("*")) == before
