"""Package names per suite and architecture, apt index parsing, kernel resolution, host tools."""

import pytest
from xenreftarget.packages import (
    DEFAULT_SUITE,
    SUPPORTED,
    XEN_BY_SUITE,
    XEN_VERSION,
    Distro,
    PackageError,
    kernel_package_from_depends,
    missing_host_tools,
    parse_control_stanzas,
    parse_depends,
    parse_package_records,
)

SHOW = """Package: linux-image-arm64
Version: 6.1.192-2
Architecture: arm64
Depends: linux-image-6.1.0-56-arm64 (= 6.1.192-2)
Filename: pool/updates/main/l/linux-signed-arm64/linux-image-arm64_6.1.192-2_arm64.deb
Size: 1448
SHA256: 7D009BCC

Package: busybox-static
Version: 1:1.35.0-4+deb12u1+b1
Architecture: arm64
Tag: admin::recovery, interface::shell,
 use::login, works-with::file
Filename: pool/main/b/busybox/busybox-static_1.35.0-4+deb12u1+b1_arm64.deb
Size: 822236
SHA256: 732c9135
"""


def test_stanzas_join_continuation_lines():
    stanzas = parse_control_stanzas(SHOW)
    assert [s["Package"] for s in stanzas] == ["linux-image-arm64", "busybox-static"]
    assert stanzas[1]["Tag"] == "admin::recovery, interface::shell,\nuse::login, works-with::file"


def test_records_keep_epoch_version_and_pool_file_name():
    records = parse_package_records(SHOW)
    busybox = records["busybox-static"]
    assert busybox.version == "1:1.35.0-4+deb12u1+b1"
    assert busybox.deb_name == "busybox-static_1.35.0-4+deb12u1+b1_arm64.deb"
    assert records["linux-image-arm64"].sha256 == "7d009bcc"


def test_record_without_checksum_is_an_error_naming_the_package():
    with pytest.raises(PackageError, match="libfoo lacks SHA256"):
        parse_package_records("Package: libfoo\nVersion: 1\nArchitecture: arm64\nFilename: f.deb\n")


def test_depends_groups_drop_versions_and_arch_qualifiers():
    assert parse_depends("a (>= 1), b:any | c [arm64], d <!nocheck>") == [["a"], ["b", "c"], ["d"]]
    assert parse_depends("") == []


def test_kernel_package_is_the_versioned_image():
    assert kernel_package_from_depends("linux-image-6.1.0-56-arm64 (= 6.1.192-2)") == \
        "linux-image-6.1.0-56-arm64"
    assert kernel_package_from_depends("kmod, linux-image-6.12.9-arm64-unsigned") == \
        "linux-image-6.12.9-arm64-unsigned"


def test_kernel_package_missing_is_explained():
    with pytest.raises(PackageError, match="no versioned kernel image"):
        kernel_package_from_depends("linux-base, initramfs-tools")


def test_kernel_package_follows_the_architecture():
    assert kernel_package_from_depends("linux-image-6.1.0-56-amd64 (= 6.1.192-2)", "amd64") == \
        "linux-image-6.1.0-56-amd64"
    with pytest.raises(PackageError, match="linux-image-amd64 depends on no"):
        kernel_package_from_depends("linux-image-6.1.0-56-arm64", "amd64")


def test_bookworm_arm64_names_follow_from_suite_and_architecture():
    distro = Distro()
    distro.check()
    assert (distro.suite, distro.arch, distro.xen_version) == ("bookworm", "arm64", "4.17")
    assert distro.hypervisor_package == "xen-hypervisor-4.17-arm64"
    assert distro.hypervisor_path == "boot/xen-4.17-arm64"
    assert distro.xen_bin_dir == "/usr/lib/xen-4.17/bin"
    assert distro.kernel_meta_package == "linux-image-arm64"
    assert distro.triplet == "aarch64-linux-gnu"


def test_roots_hold_what_dom0_needs_and_stand_ins_say_why():
    roots = Distro().root_packages()
    for name in ("xen-hypervisor-4.17-arm64", "xen-utils-4.17", "xenstore-utils", "libgcc-s1",
                 "bash", "util-linux", "busybox-static", "systemd", "systemd-sysv", "udev", "kmod"):
        assert name in roots
    stand_ins = Distro().stand_ins()
    assert "python3" in stand_ins and not set(stand_ins) & set(roots)
    assert all(len(reason) > 20 for reason in stand_ins.values())


def test_trixie_arm64_names_xen_4_20_and_its_packages():
    distro = Distro("trixie", "arm64")
    distro.check()
    assert distro.xen_version == "4.20"
    assert distro.label == "Debian trixie arm64"
    assert distro.hypervisor_package == "xen-hypervisor-4.20-arm64"
    assert distro.hypervisor_path == "boot/xen-4.20-arm64"
    assert distro.xen_bin_dir == "/usr/lib/xen-4.20/bin"
    assert distro.kernel_meta_package == "linux-image-arm64"
    roots = distro.root_packages()
    assert "xen-utils-4.20" in roots and not any("4.17" in name for name in roots)
    assert distro.stand_ins() == Distro().stand_ins()


def test_the_default_is_bookworm_and_its_xen():
    assert Distro() == Distro(DEFAULT_SUITE, "arm64") == Distro("bookworm")
    assert XEN_VERSION == XEN_BY_SUITE["bookworm"] == "4.17"
    assert {suite for suite, _ in SUPPORTED} <= set(XEN_BY_SUITE)


def test_trixie_kernel_6_12_is_found_behind_the_meta_package():
    depends = "linux-image-6.12.118+deb13-arm64 (= 6.12.118-1)"
    assert kernel_package_from_depends(depends, "arm64") == "linux-image-6.12.118+deb13-arm64"


@pytest.mark.parametrize("suite, arch", [("forky", "arm64"), ("trixie", "amd64"), ("bookworm", "armhf"), ("sid", "armhf")])
def test_combinations_not_made_to_work_yet_are_refused(suite, arch):
    with pytest.raises(PackageError, match=f"{suite}/{arch} is not supported .* bookworm/arm64, trixie/arm64, bookworm/amd64"):
        Distro(suite, arch).check()


def test_bookworm_amd64_names_the_gzipped_multiboot_xen_and_the_amd64_kernel():
    distro = Distro("bookworm", "amd64")
    distro.check()
    assert distro.triplet == "x86_64-linux-gnu"
    assert distro.hypervisor_package == "xen-hypervisor-4.17-amd64"
    assert distro.hypervisor_path == "boot/xen-4.17-amd64.gz"
    assert distro.kernel_meta_package == "linux-image-amd64"
    assert distro.root_packages()[0] == "xen-hypervisor-4.17-amd64"
    assert "xen-hypervisor-4.17-arm64" not in distro.root_packages()
    assert kernel_package_from_depends("linux-image-6.1.0-57-amd64 (= 6.1.192-3)", "amd64") == \
        "linux-image-6.1.0-57-amd64"


def test_the_qemu_a_build_needs_follows_the_architecture():
    found = {"apt-get", "apt-cache", "dpkg", "dpkg-deb", "depmod", "modprobe", "mkfs.ext4", "qemu-system-aarch64"}
    which = lambda t: f"/usr/bin/{t}" if t in found else None
    assert missing_host_tools(which=which, extra_dirs=()) == []
    assert missing_host_tools(which=which, extra_dirs=(), arch="amd64") == [
        "qemu-system-x86_64 is missing: install it with 'apt-get install qemu-system-x86'"]


def test_missing_host_tools_name_the_apt_package():
    found = {"apt-get", "apt-cache", "dpkg", "dpkg-deb", "depmod", "modprobe"}
    messages = missing_host_tools(which=lambda t: f"/usr/bin/{t}" if t in found else None,
                                  extra_dirs=())
    assert "mkfs.ext4 is missing: install it with 'apt-get install e2fsprogs'" in messages
    assert any("qemu-system-aarch64" in m and "qemu-system-arm" in m for m in messages)
    assert len(messages) == 2
