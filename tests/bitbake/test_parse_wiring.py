"""Parse-time wiring of the classes under real BitBake: task dependencies,
signatures (vardeps, computed with BitBake's own dependency hashing),
file-checksums of third-party inputs, qemuboot variables and the distro check."""

from __future__ import annotations

import os

import bb
import bb.data
import bb.parse
import pytest
from xenref_bbtest import GUEST_LINK, HOST, MiB, make_sparse


def rootfs_depends(d):
    return sorted((d.getVarFlag("do_rootfs", "depends") or "").split())


def rootfs_basehash(d):
    """do_rootfs' base hash as BitBake's signature generator computes it."""
    ignored = set((d.getVar("BB_HASHEXCLUDE_COMMON") or "").split())
    if d.getVar("__exportlist", False) is None:  # set by the first "export" statement
        d.setVar("__exportlist", [])
    tasklist, gendeps, lookupcache = bb.data.generate_dependencies(d, ignored)
    _deps, basehash = bb.data.generate_dependency_hash(tasklist, gendeps, lookupcache, ignored, "recipe")
    return basehash["recipe:do_rootfs"]


def file_checksum_entries(d):
    return sorted((d.getVarFlag("do_rootfs", "file-checksums") or "").split())


# ----------------------------------------------------------------- dependencies


def test_depends_inferred_from_bundled_rootfs_names(project):
    d = project.parse("xen-image-minimal", HOST, f"""\
        XEN_BUNDLED_GUESTS = "{GUEST_LINK}.ext4:Image my-guest-qemuarm64.rootfs-20261126120000.ext4.qcow2:Image vendor.img:vmlinuz"
        """)
    assert rootfs_depends(d) == [
        "my-guest:do_image_complete",
        "virtual/kernel:do_deploy",
        "xen-guest-image-minimal:do_image_complete",
    ]


def test_depends_from_guest_images_and_auto_bundle_overrides(project):
    d = project.parse("xen-image-minimal", HOST, """\
        XEN_GUEST_IMAGES = "listed-guest"
        XEN_GUEST_AUTO_BUNDLE:pn-auto-guest = "1"
        XEN_GUEST_AUTO_BUNDLE:pn-off-guest = "0"
        """)
    assert rootfs_depends(d) == [
        "auto-guest:do_image_complete",
        "listed-guest:do_image_complete",
        "virtual/kernel:do_deploy",
    ]


def test_external_opt_out(project):
    d = project.parse("xen-image-minimal", HOST, """\
        XEN_BUNDLED_GUESTS = "vendor-qemuarm64.rootfs.ext4:Image other-qemuarm64.rootfs.ext4:Image"
        XEN_GUEST_EXTERNAL = "vendor-qemuarm64.rootfs.ext4 other"
        """)
    assert rootfs_depends(d) == ["virtual/kernel:do_deploy"]


def test_custom_name_suffixes_follow_oe_core_variables(project):
    d = project.parse("xen-image-minimal", HOST, f"""\
        IMAGE_NAME_SUFFIX = ""
        XEN_BUNDLED_GUESTS = "{GUEST_LINK}.ext4:Image guest2-qemuarm64.ext4:Image"
        """)
    # With an empty IMAGE_NAME_SUFFIX the ".rootfs" name is no image output name.
    assert rootfs_depends(d) == ["guest2:do_image_complete", "virtual/kernel:do_deploy"]


# ----------------------------------------------------------------- signatures


def test_vardeps_name_every_setting_and_varflag(project):
    d = project.parse("xen-image-minimal", HOST, """\
        XEN_GUEST_MEMORY[web] = "1024"
        XEN_GUEST_EXTRA[db] = "root=/dev/xvda rw"
        XEN_GUEST_MEMORY[doc] = "documentation, not a domain"
        """)
    vardeps = d.getVarFlag("do_rootfs", "vardeps").split()
    for name in ("XEN_BUNDLED_GUESTS", "XEN_GUEST_IMAGES", "XEN_GUEST_AUTOSTART", "XEN_GUEST_EXTERNAL",
                 "XEN_GUEST_MEMORY", "XEN_GUEST_VCPUS", "XEN_GUEST_VIF", "XEN_GUEST_EXTRA",
                 "XEN_GUEST_MEMORY[web]", "XEN_GUEST_EXTRA[db]"):
        assert name in vardeps
    assert "XEN_GUEST_MEMORY[doc]" not in vardeps


@pytest.mark.parametrize("change", [
    'XEN_BUNDLED_GUESTS = "a-qemuarm64.rootfs.ext4:Image"',
    'XEN_GUEST_AUTOSTART = "web"',
    'XEN_GUEST_MEMORY = "256"',
    'XEN_GUEST_MEMORY[web] = "2048"',
    'XEN_GUEST_VIF[web] = "bridge=xenbr1"',
    'XEN_GUEST_EXTRA = "root=/dev/xvda rw"',
    'XEN_GUEST_VCPUS[web] = "4"',
])
def test_setting_changes_change_do_rootfs_signature(project, change):
    base = 'XEN_GUEST_MEMORY[web] = "1024"\n'
    before = rootfs_basehash(project.parse("xen-image-minimal", HOST, base))
    same = rootfs_basehash(project.parse("xen-image-minimal", HOST, base))
    after = rootfs_basehash(project.parse("xen-image-minimal", HOST, base + change + "\n"))
    assert before == same
    assert before != after


def test_guest_setting_changes_change_guest_task_signature(project):
    def basehash(conf):
        d = project.parse("xen-guest-image-minimal", "inherit xen-ref-guest\n", conf)
        ignored = set()
        if d.getVar("__exportlist", False) is None:
            d.setVar("__exportlist", [])
        tasks, gendeps, cache = bb.data.generate_dependencies(d, ignored)
        return bb.data.generate_dependency_hash(tasks, gendeps, cache, ignored, "r")[1]["r:do_xen_guest_bundle_config"]

    base = 'XEN_GUEST_AUTO_BUNDLE = "1"\n'
    assert basehash(base) == basehash(base)
    assert basehash(base) != basehash(base + 'XEN_GUEST_MEMORY[xen-guest-image-minimal] = "64"\n')
    assert basehash(base) != basehash('XEN_GUEST_AUTO_BUNDLE = "0"\n')


# ----------------------------------------------------------------- file-checksums


def test_file_checksums_cover_third_party_inputs_only(project):
    dep = project.deploy
    make_sparse(dep / (GUEST_LINK + ".ext4"), 8 * MiB)
    (dep / "Image").write_bytes(b"kernel")
    (dep / "vendor.img").write_bytes(b"disk")
    (dep / "vendor-kernel").write_bytes(b"kernel")
    (dep / "xen-guest-bundle-vendor.cfg").write_text(
        'name = "vendor"\nmemory = 64\ndisk = [ "file:vendor.img,xvda,rw" ]\nkernel = "vendor-kernel"\n')
    # A config deployed by a guest image the host depends on: tracked by the task dependency.
    (dep / (f"xen-guest-bundle-{GUEST_LINK}.cfg")).write_text(
        f'name = "auto"\nmemory = 64\ndisk = [ "file:{GUEST_LINK}.ext4,xvda,rw" ]\nkernel = "Image"\n')
    (dep / "loose.ext4").write_bytes(b"third-party rootfs")

    d = project.parse("xen-image-minimal", HOST, f"""\
        XEN_BUNDLED_GUESTS = "{GUEST_LINK}.ext4:Image loose.ext4:Image missing.ext4:Image"
        """)
    entries = file_checksum_entries(d)
    assert entries == sorted([
        f"{dep}/loose.ext4:True",
        f"{dep}/missing.ext4:False",
        f"{dep}/vendor-kernel:True",
        f"{dep}/vendor.img:True",
        f"{dep}/xen-guest-bundle-vendor.cfg:True",
    ])

    # The parse cache of the recipe is invalidated when the deploy dir or a
    # third-party config changes (BitBake compares these mtimes).
    depends = dict(d.getVar("__depends", False))
    assert str(dep) in depends
    assert str(dep / "xen-guest-bundle-vendor.cfg") in depends


def test_file_checksums_are_real_bitbake_checksums(project):
    import bb.checksum
    dep = project.deploy
    (dep / "third.img").write_bytes(b"one")
    d = project.parse("xen-image-minimal", HOST, 'XEN_BUNDLED_GUESTS = "third.img:vmlinuz"\n')
    flag = d.getVarFlag("do_rootfs", "file-checksums")
    cache = bb.checksum.FileChecksumCache()
    cache.init_cache(str(project.top / "cache"))
    first = cache.get_checksums(flag, "xen-image-minimal", [])
    assert [os.path.basename(p) for p, _ in first] == ["third.img"]
    (dep / "third.img").write_bytes(b"two, and longer")
    os.utime(dep / "third.img", (1, 1))  # a new mtime, as a rebuild gives
    second = cache.get_checksums(flag, "xen-image-minimal", [])
    assert first != second


# ----------------------------------------------------------------- image size


def test_rootfs_extra_space_is_small_headroom_not_guest_size(project):
    d = project.parse("xen-image-minimal", HOST)
    assert d.getVar("IMAGE_ROOTFS_EXTRA_SPACE") == "65536"
    d = project.parse("xen-image-minimal", HOST, 'XEN_HOST_ROOTFS_HEADROOM = "1024"\n')
    assert d.getVar("IMAGE_ROOTFS_EXTRA_SPACE") == "1024"


# ----------------------------------------------------------------- qemuboot


QEMU = """\
inherit xen-ref-qemuboot
# What qemuarm64.conf sets (hard assignments) and qemuboot.bbclass appends:
QB_MACHINE = "-machine virt"
QB_CPU = "-cpu cortex-a57"
QB_OPT_APPEND = "-device qemu-xhci -device usb-tablet -device usb-kbd"
QB_NETWORK_DEVICE = "-device virtio-net-pci,netdev=net0,mac=@MAC@"
QB_ROOTFS_OPT = "-drive id=disk0,file=@ROOTFS@,if=none,format=raw -device virtio-blk-pci,drive=disk0"
QB_KERNEL_CMDLINE_APPEND:append = " swiotlb=0"
QB_MEM ?= "-m 256"
"""


def test_qemuboot_variables(project):
    d = project.parse("xen-image-minimal", QEMU)
    assert d.getVar("QB_DEFAULT_KERNEL") == "xen-qemuarm64"
    assert d.getVar("QB_MACHINE") == "-machine virt,gic-version=3,virtualization=on"
    assert d.getVar("QB_CPU") == "-cpu cortex-a57"
    assert d.getVar("QB_MEM") == "-m 2048"
    assert d.getVar("QB_DEFAULT_FSTYPE") == "ext4"
    assert "ext4" in d.getVar("IMAGE_FSTYPES").split()
    assert "virtio-blk-device" in d.getVar("QB_ROOTFS_OPT")
    assert "virtio-net-device" in d.getVar("QB_NETWORK_DEVICE")
    assert d.getVar("QB_XEN_DOM0_KERNEL") == "Image"
    assert d.getVar("QB_XEN_DOM0_ADDR") == "0x49000000"
    assert d.getVar("QB_XEN_DOM0_BOOTARGS") == "console=hvc0 root=/dev/vda rw rootwait"
    assert d.getVar("QB_XEN_CMDLINE") == "dom0_mem=512M,max:512M bootscrub=0  console=dtuart"
    assert d.getVar("QB_OPT_APPEND") == (
        '-device "guest-loader,addr=0x49000000,kernel=@DEPLOY_DIR_IMAGE@/Image,'
        'bootargs=console=hvc0 root=/dev/vda rw rootwait"')
    # runqemu puts its console= options before QB_KERNEL_CMDLINE_APPEND: Xen's
    # last console= must be dtuart (swiotlb=0 is ignored by Xen).
    cmdline = d.getVar("QB_KERNEL_CMDLINE_APPEND").split()
    consoles = [w for w in cmdline if w.startswith("console=")]
    assert consoles[-1] == "console=dtuart"
    deps = d.getVarFlag("do_write_qemuboot_conf", "depends").split()
    assert "xen:do_deploy" in deps and "virtual/kernel:do_deploy" in deps
    # testimage's QemuRunner logs in on its first tcpserial port: that must be
    # the PL011 (Xen's console), and there is exactly one console entry.
    assert d.getVar("QB_TCPSERIAL_OPT") == "-serial tcp:127.0.0.1:@PORT@,nodelay=on"
    assert d.getVar("SERIAL_CONSOLES") == "115200;hvc0"


def test_qemuboot_dom0_initrd_adds_a_second_guest_loader(project):
    d = project.parse("xen-image-minimal", QEMU, 'QB_XEN_DOM0_INITRD = "initrd.cpio.gz"\n')
    assert d.getVar("QB_OPT_APPEND") == (
        '-device "guest-loader,addr=0x49000000,kernel=@DEPLOY_DIR_IMAGE@/Image,'
        'bootargs=console=hvc0 root=/dev/vda rw rootwait" '
        '-device guest-loader,addr=0x4c000000,initrd=@DEPLOY_DIR_IMAGE@/initrd.cpio.gz')


def test_qemuboot_tuning_through_qb_xen_variables(project):
    d = project.parse("xen-image-minimal", QEMU, """\
        QB_XEN_DOM0_MEM = "1G"
        QB_XEN_CMDLINE_EXTRA = "loglvl=all"
        QB_XEN_DOM0_BOOTARGS = "console=hvc0 root=/dev/vda rw video=a,b"
        QB_MEM = "-m 4096"
        """)
    assert d.getVar("QB_XEN_CMDLINE") == "dom0_mem=1G,max:1G bootscrub=0 loglvl=all console=dtuart"
    assert d.getVar("QB_MEM") == "-m 4096"
    # QEMU's option syntax needs "," doubled inside a property value.
    assert "bootargs=console=hvc0 root=/dev/vda rw video=a,,b" in d.getVar("QB_OPT_APPEND")


# ----------------------------------------------------------------- distro check


CHECKED = "inherit xen-ref-distro-check\n"


def test_distro_check_requires_virtualization_for_linux_yocto(project):
    # BitBake records a skipped recipe's reason in __SKIPPED (shown by
    # "bitbake <image>" as "was skipped: <reason>").
    d = project.parse("xen-image-minimal", CHECKED, 'DISTRO_FEATURES = "xen systemd"\n')
    message = d.getVar("__SKIPPED")
    assert "DISTRO_FEATURES has 'xen' but not 'virtualization'" in message
    assert 'DISTRO_FEATURES:append = " virtualization"' in message


@pytest.mark.parametrize("conf", [
    'DISTRO_FEATURES = "xen systemd virtualization"',
    'DISTRO_FEATURES = "xen systemd"\nPREFERRED_PROVIDER_virtual/kernel = "linux-vendor"',
    'DISTRO_FEATURES = "xen systemd"\nXEN_REF_KERNEL_NEEDS_VIRTUALIZATION = "0"',
])
def test_distro_check_passes_with_features_or_own_kernel(project, conf):
    d = project.parse("xen-image-minimal", CHECKED, conf + "\n")
    assert d.getVar("__SKIPPED") is None


# ----------------------------------------------------------------- yes/no words


@pytest.mark.parametrize("value", ["1", "0", "y", "Y", "n", "yes", "No", "true", "FALSE", "", None,
                                   "maybe", "on", " 1", "2"])
def test_yes_no_words_are_bitbakes(value):
    """xenbundle.wiring.parse_yes_no (used by the classes) reads words as bb.utils.to_boolean."""
    import bb.utils
    from xenbundle.wiring import parse_yes_no
    try:
        expected = bool(bb.utils.to_boolean(value))
    except ValueError:
        with pytest.raises(ValueError):
            parse_yes_no(value)
    else:
        assert parse_yes_no(value) is expected
