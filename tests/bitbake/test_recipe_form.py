"""BUNDLED_XEN_GUESTS (meta-virtualization's recipe form) in xen-ref-bundle, under real BitBake.

Every variable and varflag of the form is set the way a local.conf sets it, the host's
do_rootfs step is run with bb.build.exec_func, and the parse-time wiring (task
dependencies, signatures computed by BitBake's own code, file-checksums) is read from
the parsed recipe.
"""

from __future__ import annotations

import logging
import os
import pathlib

import bb
import bb.build
import bb.data
import pytest
from xenbundle import settings as xsettings
from xenbundle import xlcfg
from xenref_bbtest import HOST, MiB, make_guest_image, make_kernel, make_sparse

GUEST = "xen-guest-image-minimal"


@pytest.fixture
def deploy(project):
    make_guest_image(project.deploy)
    make_kernel(project.deploy)
    return project.deploy


def bundle(project, conf):
    """Parse the host with ``conf`` as local.conf and run its do_rootfs; returns the rootfs."""
    d = project.parse("xen-image-minimal", HOST, conf)
    rootfs = d.getVar("IMAGE_ROOTFS")
    os.makedirs(rootfs)
    bb.build.exec_func("do_rootfs", d)
    return rootfs


def config(rootfs, name):
    return xlcfg.parse_file(os.path.join(rootfs, "etc/xen", name)).settings()


def fails(project, bblog, conf):
    """Run do_rootfs expecting it to stop; returns the error text, checks nothing is left."""
    d = project.parse("xen-image-minimal", HOST, conf)
    rootfs = d.getVar("IMAGE_ROOTFS")
    os.makedirs(rootfs)
    with pytest.raises(bb.BBHandledException):
        bb.build.exec_func("do_rootfs", d)
    assert os.listdir(rootfs) == [], "nothing of a failed bundle may be left in the rootfs"
    return bblog.text(logging.ERROR)


def depends(d):
    return sorted((d.getVarFlag("do_rootfs", "depends") or "").split())


def basehash(d, task="do_rootfs"):
    if d.getVar("__exportlist", False) is None:
        d.setVar("__exportlist", [])
    tasks, gendeps, cache = bb.data.generate_dependencies(d, set())
    return bb.data.generate_dependency_hash(tasks, gendeps, cache, set(), "r")[1][f"r:{task}"]


# ------------------------------------------------------------------ the entries


def test_entry_with_autostart(project, deploy):
    rootfs = bundle(project, f'BUNDLED_XEN_GUESTS = "{GUEST}:autostart"\n')
    s = config(rootfs, f"{GUEST}.cfg")
    assert (s["name"], s["memory"], s["vcpus"], s["vif"]) == (GUEST, "512", "1", ["bridge=xenbr0"])
    assert s["kernel"] == "/var/lib/xen/images/Image"
    assert s["disk"] == [f"file:/var/lib/xen/images/{GUEST}-qemuarm64.rootfs.ext4,xvda,rw"]
    assert os.readlink(os.path.join(rootfs, f"etc/xen/auto/{GUEST}.cfg")) == f"../{GUEST}.cfg"
    image = os.path.join(rootfs, f"var/lib/xen/images/{GUEST}-qemuarm64.rootfs.ext4")
    assert os.path.getsize(image) == 64 * MiB and os.stat(image).st_blocks * 512 < MiB


def test_entry_without_autostart(project, deploy):
    rootfs = bundle(project, f'BUNDLED_XEN_GUESTS = "{GUEST}"\n')
    assert os.path.exists(os.path.join(rootfs, f"etc/xen/{GUEST}.cfg"))
    assert not os.path.exists(os.path.join(rootfs, "etc/xen/auto"))


def test_every_per_guest_varflag(project, deploy):
    make_sparse(project.deploy / "vendor-disk.img", 8 * MiB)
    (project.deploy / "vendor-kernel").write_bytes(b"vendor kernel")
    rootfs = bundle(project, f"""\
        BUNDLED_XEN_GUESTS = "{GUEST} vendor:external:autostart"
        XEN_GUEST_MEMORY[{GUEST}] = "1024"
        XEN_GUEST_VCPUS[{GUEST}] = "2"
        XEN_GUEST_VIF[{GUEST}] = "bridge=xenbr0,mac=00:16:3e:00:00:01"
        XEN_GUEST_EXTRA[{GUEST}] = "root=/dev/xvdb ro console=hvc0"
        XEN_GUEST_DISK_DEVICE[{GUEST}] = "xvdb"
        XEN_GUEST_NAME[{GUEST}] = "minimal"
        XEN_GUEST_ROOTFS[vendor] = "vendor-disk.img"
        XEN_GUEST_KERNEL[vendor] = "vendor-kernel"
        """)
    s = config(rootfs, f"{GUEST}.cfg")
    assert (s["name"], s["memory"], s["vcpus"]) == ("minimal", "1024", "2")
    assert s["vif"] == ["bridge=xenbr0,mac=00:16:3e:00:00:01"]
    assert s["extra"] == "root=/dev/xvdb ro console=hvc0"
    assert s["disk"] == [f"file:/var/lib/xen/images/{GUEST}-qemuarm64.rootfs.ext4,xvdb,rw"]
    v = config(rootfs, "vendor.cfg")
    assert v["disk"] == ["file:/var/lib/xen/images/vendor-disk.img,xvda,rw"]
    assert v["kernel"] == "/var/lib/xen/images/vendor-kernel"
    assert os.listdir(os.path.join(rootfs, "etc/xen/auto")) == ["vendor.cfg"]


def test_ramdisk_of_generated_configs_is_ours(project, deploy):
    """XEN_GUEST_RAMDISK (meta-xen-ref's own): the plain value for every entry, a varflag per entry."""
    (project.deploy / "initrd.gz").write_bytes(b"initrd")
    make_sparse(project.deploy / "vendor-disk.img", 8 * MiB)
    rootfs = bundle(project, f"""\
        BUNDLED_XEN_GUESTS = "{GUEST} vendor:external"
        XEN_GUEST_RAMDISK = "initrd.gz"
        XEN_GUEST_RAMDISK[vendor] = "none"
        XEN_GUEST_ROOTFS[vendor] = "vendor-disk.img"
        """)
    assert config(rootfs, f"{GUEST}.cfg")["ramdisk"] == "/var/lib/xen/images/initrd.gz"
    assert "ramdisk" not in config(rootfs, "vendor.cfg")
    with open(os.path.join(rootfs, "var/lib/xen/images/initrd.gz"), "rb") as copied:
        assert copied.read() == b"initrd"


def test_meta_virtualization_defaults(project, deploy):
    rootfs = bundle(project, f"""\
        BUNDLED_XEN_GUESTS = "{GUEST}"
        XEN_GUEST_MEMORY_DEFAULT = "768"
        XEN_GUEST_VCPUS_DEFAULT = "3"
        XEN_GUEST_VIF_DEFAULT = "bridge=xenbr1"
        XEN_GUEST_EXTRA_DEFAULT = "root=/dev/xvdc ro"
        XEN_GUEST_DISK_DEVICE_DEFAULT = "xvdc"
        """)
    s = config(rootfs, f"{GUEST}.cfg")
    assert (s["memory"], s["vcpus"], s["vif"], s["extra"]) == ("768", "3", ["bridge=xenbr1"],
                                                               "root=/dev/xvdc ro")
    assert s["disk"][0].endswith(",xvdc,rw")


def test_image_fstype_plain_and_per_guest(project, deploy):
    make_sparse(project.deploy / f"{GUEST}-qemuarm64.rootfs.ext4.qcow2", MiB)
    make_sparse(project.deploy / "other-qemuarm64.rootfs.btrfs", MiB)
    rootfs = bundle(project, f"""\
        BUNDLED_XEN_GUESTS = "{GUEST} other:external"
        XEN_GUEST_IMAGE_FSTYPE = "btrfs"
        XEN_GUEST_IMAGE_FSTYPE[{GUEST}] = "ext4.qcow2"
        """)
    assert config(rootfs, f"{GUEST}.cfg")["disk"] == [
        f"qcow2:/var/lib/xen/images/{GUEST}-qemuarm64.rootfs.ext4.qcow2,xvda,rw"]
    assert config(rootfs, "other.cfg")["disk"] == [
        "file:/var/lib/xen/images/other-qemuarm64.rootfs.btrfs,xvda,rw"]


def test_kernel_none_is_an_hvm_guest_on_x86(project, deploy):
    rootfs = bundle(project, f"""\
        TARGET_ARCH = "x86_64"
        BUNDLED_XEN_GUESTS = "{GUEST}"
        XEN_GUEST_KERNEL[{GUEST}] = "none"
        """)
    s = config(rootfs, f"{GUEST}.cfg")
    assert s["type"] == "hvm" and "kernel" not in s
    assert os.listdir(os.path.join(rootfs, "var/lib/xen/images")) == [
        f"{GUEST}-qemuarm64.rootfs.ext4"]


def test_kernel_none_on_arm_is_an_error(project, deploy, bblog):
    errors = fails(project, bblog, f'BUNDLED_XEN_GUESTS = "{GUEST}"\n'
                                   f'XEN_GUEST_KERNEL[{GUEST}] = "none"\n')
    assert f'XEN_GUEST_KERNEL[{GUEST}] = "none" means an HVM guest' in errors


def test_custom_config_file(project, deploy):
    unpack = project.top / "tmp/work/xen-image-minimal/sources"
    unpack.mkdir(parents=True)
    (unpack / "custom.cfg").write_text(
        '# mine\nname = "custom"\nmemory = 128\ndisk = [ "file:placeholder,xvda,rw" ]\n'
        'kernel = "placeholder"\non_poweroff = "destroy"\n')
    rootfs = bundle(project, f"""\
        BUNDLED_XEN_GUESTS = "{GUEST}:autostart"
        XEN_GUEST_CONFIG_FILE[{GUEST}] = "${{UNPACKDIR}}/custom.cfg"
        """)
    text = pathlib.Path(os.path.join(rootfs, f"etc/xen/{GUEST}.cfg")).read_text()
    assert text.startswith("# mine\n") and 'on_poweroff = "destroy"' in text
    s = xlcfg.parse(text).settings()
    assert (s["name"], s["memory"]) == ("custom", "128")
    assert s["disk"] == [f"file:/var/lib/xen/images/{GUEST}-qemuarm64.rootfs.ext4,xvda,rw"]
    assert s["kernel"] == "/var/lib/xen/images/Image"


@pytest.mark.parametrize("conf, message", [
    (f'BUNDLED_XEN_GUESTS = "{GUEST}:autostrat"', "has the unknown tag 'autostrat'"),
    (f'BUNDLED_XEN_GUESTS = "{GUEST} {GUEST}:autostart"', "names 'xen-guest-image-minimal' again"),
    ('BUNDLED_XEN_GUESTS = "nothing:external"', "no rootfs: neither 'nothing-qemuarm64.ext4'"),
    (f'BUNDLED_XEN_GUESTS = "{GUEST}"\nXEN_GUEST_MEMORY[{GUEST}] = "lots"',
     f'XEN_GUEST_MEMORY[{GUEST}] = "lots" is not a positive whole number'),
    (f'BUNDLED_XEN_GUESTS = "{GUEST}"\nXEN_GUEST_CONFIG_FILE[{GUEST}] = "/nonexistent.cfg"',
     "/nonexistent.cfg does not exist"),
    ((f'BUNDLED_XEN_GUESTS = "{GUEST}"\nXEN_GUEST_SOURCE_TYPE[{GUEST}] = "raw"\n'
     f'XEN_GUEST_SOURCE_FILE[{GUEST}] = "x.img"'), "move the guest into a bundle recipe"),
    (f'BUNDLED_XEN_GUESTS = "{GUEST}"\nXEN_GUEST_KERNEL[{GUEST}] = "vmlinux-missing"',
     'XEN_GUEST_KERNEL[xen-guest-image-minimal] = "vmlinux-missing": neither of'),
])
def test_bad_entries_stop_the_build(project, deploy, bblog, conf, message):
    assert message in fails(project, bblog, conf + "\n")


# ------------------------------------------------------------------ precedence and conflicts


def test_entry_key_and_domain_key_agreeing(project, deploy):
    rootfs = bundle(project, f"""\
        BUNDLED_XEN_GUESTS = "{GUEST}"
        XEN_GUEST_NAME[{GUEST}] = "mini"
        XEN_GUEST_MEMORY[{GUEST}] = "300"
        XEN_GUEST_MEMORY[mini] = "300"
        XEN_GUEST_VCPUS[mini] = "2"
        XEN_GUEST_MEMORY = "64"
        """)
    s = config(rootfs, f"{GUEST}.cfg")
    assert (s["name"], s["memory"], s["vcpus"]) == ("mini", "300", "2")


@pytest.mark.parametrize("conf, message", [
    ((f'XEN_GUEST_NAME[{GUEST}] = "mini"\nXEN_GUEST_MEMORY[{GUEST}] = "300"\n'
     'XEN_GUEST_MEMORY[mini] = "400"'),
     (f'XEN_GUEST_MEMORY[{GUEST}] = "300" (keyed by the entry) and XEN_GUEST_MEMORY[mini] = "400" '
     "(keyed by the domain name) are two values for one guest")),
    ('XEN_GUEST_MEMORY = "256"\nXEN_GUEST_MEMORY_DEFAULT = "1024"',
     ('XEN_GUEST_MEMORY = "256" and XEN_GUEST_MEMORY_DEFAULT = "1024" (meta-virtualization\'s '
     "name) both set the default of every guest")),
])
def test_two_values_for_one_guest_are_an_error_naming_both(project, deploy, bblog, conf, message):
    assert message in fails(project, bblog, f'BUNDLED_XEN_GUESTS = "{GUEST}"\n{conf}\n')


def test_one_guest_named_by_two_forms(project, deploy, bblog):
    errors = fails(project, bblog, f"""\
        BUNDLED_XEN_GUESTS = "{GUEST}"
        XEN_BUNDLED_GUESTS = "{GUEST}-qemuarm64.rootfs.ext4:Image"
        """)
    (problem,) = [line for line in errors.splitlines() if "writable disk" in line]
    assert f"guest '{GUEST}' (BUNDLED_XEN_GUESTS entry 1 '{GUEST}')" in problem
    assert f"guest '{GUEST}-qemuarm64' (XEN_BUNDLED_GUESTS entry 1 '{GUEST}-qemuarm64" in problem
    assert "the same guest image is bundled twice" in problem


def test_one_guest_by_entry_and_auto_bundle_config(project, deploy, bblog):
    (project.deploy / f"xen-guest-bundle-{GUEST}-qemuarm64.rootfs.cfg").write_text(
        f'name = "{GUEST}"\nkernel = "Image"\ndisk = ["file:{GUEST}-qemuarm64.rootfs.ext4,xvda,rw"]\n')
    errors = fails(project, bblog, f'BUNDLED_XEN_GUESTS = "{GUEST}"\n')
    assert f"domain name '{GUEST}' is also used by guest '{GUEST}' (BUNDLED_XEN_GUESTS entry 1" in errors


def test_xen_guest_autostart_applies_to_entries(project, deploy):
    rootfs = bundle(project, f'BUNDLED_XEN_GUESTS = "{GUEST}"\nXEN_GUEST_AUTOSTART = "{GUEST}"\n')
    assert os.listdir(os.path.join(rootfs, "etc/xen/auto")) == [f"{GUEST}.cfg"]


def test_class_weak_defaults_are_the_engines(project):
    d = project.parse("xen-image-minimal", HOST)
    for name, value in xsettings.WEAK_DEFAULTS.items():
        assert d.getVar(name) == value, name
    for setting in xsettings.SETTINGS:
        assert d.getVar(setting.variable) == xsettings.WEAK_DEFAULTS[setting.default_variable]
        assert d.getVar(setting.variable, True, True) is None, "the plain variable is only a weak default"


# ------------------------------------------------------------------ parse time


def test_rootfs_waits_for_entries_unless_external(project):
    d = project.parse("xen-image-minimal", HOST, f"""\
        BUNDLED_XEN_GUESTS = "{GUEST}:autostart vendor:external other other2 broken:nope"
        XEN_GUEST_EXTERNAL = "other2"
        """)
    assert depends(d) == ["other:do_image_complete", "virtual/kernel:do_deploy",
                          f"{GUEST}:do_image_complete"]


def test_only_bundled_xen_guests_makes_rootfs_wait_for_the_guest_image(project):
    """The check-layer case of issue 12, on this layer's class."""
    d = project.parse("xen-image-minimal", HOST,
                      'BUNDLED_XEN_GUESTS = "xen-guest-image-minimal:autostart"\n')
    assert "xen-guest-image-minimal:do_image_complete" in depends(d)


def test_vardeps_name_the_entry_variables_and_flags(project):
    d = project.parse("xen-image-minimal", HOST, f"""\
        BUNDLED_XEN_GUESTS = "{GUEST}"
        XEN_GUEST_ROOTFS[{GUEST}] = "x.ext4"
        XEN_GUEST_CONFIG_FILE[{GUEST}] = "/c.cfg"
        XEN_GUEST_IMAGE_FSTYPE[{GUEST}] = "ext4"
        """)
    vardeps = d.getVarFlag("do_rootfs", "vardeps").split()
    for name in ("BUNDLED_XEN_GUESTS", f"XEN_GUEST_ROOTFS[{GUEST}]", f"XEN_GUEST_CONFIG_FILE[{GUEST}]",
                 f"XEN_GUEST_IMAGE_FSTYPE[{GUEST}]", "XEN_GUEST_MEMORY_DEFAULT",
                 "XEN_GUEST_DISK_DEVICE", "XEN_GUEST_IMAGE_FSTYPE", "XEN_REF_BUNDLES_DIR"):
        assert name in vardeps


@pytest.mark.parametrize("change", [
    f'BUNDLED_XEN_GUESTS = "{GUEST}:autostart"',
    f'XEN_GUEST_MEMORY[{GUEST}] = "300"',
    f'XEN_GUEST_VCPUS[{GUEST}] = "2"',
    f'XEN_GUEST_VIF[{GUEST}] = "bridge=xenbr1"',
    f'XEN_GUEST_EXTRA[{GUEST}] = "ro"',
    f'XEN_GUEST_DISK_DEVICE[{GUEST}] = "xvdb"',
    f'XEN_GUEST_NAME[{GUEST}] = "mini"',
    f'XEN_GUEST_CONFIG_FILE[{GUEST}] = "/c.cfg"',
    f'XEN_GUEST_ROOTFS[{GUEST}] = "x.ext4"',
    f'XEN_GUEST_KERNEL[{GUEST}] = "none"',
    f'XEN_GUEST_IMAGE_FSTYPE[{GUEST}] = "ext4.qcow2"',
    'XEN_GUEST_IMAGE_FSTYPE = "btrfs"',
    'XEN_GUEST_MEMORY_DEFAULT = "1024"',
    'XEN_GUEST_VCPUS_DEFAULT = "2"',
    'XEN_GUEST_VIF_DEFAULT = "bridge=xenbr1"',
    'XEN_GUEST_EXTRA_DEFAULT = "ro"',
    'XEN_GUEST_DISK_DEVICE_DEFAULT = "xvdb"',
    'XEN_GUEST_DISK_DEVICE = "xvdb"',
    f'XEN_GUEST_RAMDISK[{GUEST}] = "initrd.gz"',
    'XEN_GUEST_RAMDISK = "initrd.gz"',
])
def test_each_variable_and_flag_changes_the_rootfs_signature(project, change):
    base = f'BUNDLED_XEN_GUESTS = "{GUEST}"\n'
    before = basehash(project.parse("xen-image-minimal", HOST, base))
    assert before == basehash(project.parse("xen-image-minimal", HOST, base))
    assert before != basehash(project.parse("xen-image-minimal", HOST, base + change + "\n"))


def test_file_checksums_of_external_entries_and_custom_configs(project, deploy):
    dep = project.deploy
    make_sparse(dep / "vendor-qemuarm64.rootfs.ext4", MiB)
    (dep / "vendor-kernel").write_bytes(b"k")
    custom = project.top / "custom.cfg"
    custom.write_text('name = "x"\ndisk = ["file:x,xvda,rw", "file:data.img,xvdb,rw"]\n')
    d = project.parse("xen-image-minimal", HOST, f"""\
        BUNDLED_XEN_GUESTS = "{GUEST} vendor:external"
        XEN_GUEST_KERNEL[vendor] = "vendor-kernel"
        XEN_GUEST_CONFIG_FILE[{GUEST}] = "{custom}"
        """)
    entries = sorted((d.getVarFlag("do_rootfs", "file-checksums") or "").split())
    unpack = d.getVar("UNPACKDIR")
    assert entries == sorted([
        f"{custom}:True", f"{dep}/data.img:False", f"{dep}/vendor-kernel:True",
        f"{dep}/vendor-qemuarm64.ext4:False", f"{dep}/vendor-qemuarm64.rootfs.ext4:True",
        f"{unpack}/vendor-kernel:False"])
    assert str(custom) in dict(d.getVar("__depends", False))
