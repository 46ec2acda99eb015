"""Package list, apt index parsing, kernel resolution and the download cache."""

import hashlib
from pathlib import Path

import pytest
from reftarget_helpers import record
from xenreftarget import packages
from xenreftarget.packages import (
    Apt,
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


def test_package_list_has_what_dom0_needs_at_run_time():
    for name in ("libgcc-s1", "bash", "util-linux", "busybox-static", "xen-utils-4.17",
                 "xen-hypervisor-4.17-arm64", "xenstore-utils"):
        assert name in packages.BASE_PACKAGES


def test_architecture_added_only_when_missing(runner):
    runner.on(["dpkg", "--print-foreign-architectures"], stdout="i386\n")
    runner.on(["dpkg", "--add-architecture"])
    Apt(run=runner, log=lambda m: None).ensure_architecture()
    assert ["dpkg", "--add-architecture", "arm64"] in runner.calls

    present = type(runner)()
    present.on(["dpkg", "--print-foreign-architectures"], stdout="i386\narm64\n")
    Apt(run=present, log=lambda m: None).ensure_architecture()
    assert present.calls == [["dpkg", "--print-foreign-architectures"]]


def test_apt_update_only_without_arm64_lists(runner, tmp_path):
    runner.on(["apt-get", "update"])
    apt = Apt(run=runner, lists_dir=tmp_path, log=lambda m: None)
    (tmp_path / "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4").touch()
    apt.ensure_lists()
    assert runner.calls == [["apt-get", "update"]]

    runner.calls.clear()
    (tmp_path / "deb.debian.org_debian_dists_bookworm_main_binary-arm64_Packages.lz4").touch()
    apt.ensure_lists()
    assert runner.calls == []


def test_resolve_follows_the_meta_package(runner):
    def show(cmd, kwargs):
        pass

    stanzas = []
    for name in list(packages.BASE_PACKAGES) + ["linux-image-6.1.0-56-arm64"]:
        stanzas.append(f"Package: {name}\nVersion: 1\nArchitecture: arm64\n"
                       f"Filename: pool/{name}_1_arm64.deb\nSHA256: ab\n")
    runner.on(["apt-cache", "show", "--no-all-versions", "linux-image-arm64:arm64"], stdout=SHOW)
    runner.on(["apt-cache", "show"], stdout="\n".join(stanzas))
    records = Apt(run=runner, log=lambda m: None).resolve()
    assert records[-1].name == "linux-image-6.1.0-56-arm64"
    assert [r.name for r in records[:-1]] == list(packages.BASE_PACKAGES)
    assert "linux-image-6.1.0-56-arm64:arm64" in runner.calls[-1]


def test_unknown_package_is_named(runner):
    runner.on(["apt-cache", "show"], stdout="")
    with pytest.raises(PackageError, match="no arm64 candidate for: busybox-static"):
        Apt(run=runner, log=lambda m: None).show(["busybox-static"])


def _deb(content: bytes):
    return content, hashlib.sha256(content).hexdigest()


def test_download_reuses_verified_files_and_fetches_the_rest(runner, tmp_path):
    good, good_sha = _deb(b"cached")
    new, new_sha = _deb(b"fresh")
    cached = record("bash", "5.2", good_sha)
    missing = record("zlib1g", "1:1.2", new_sha)
    debs = tmp_path / "debs"
    debs.mkdir()
    (debs / cached.deb_name).write_bytes(good)

    def fetch(cmd, kwargs):
        # apt-get download writes the epoch as %3a into the file name
        Path(kwargs["cwd"], "zlib1g_1%3a1.2_arm64.deb").write_bytes(new)

    runner.on(["apt-get", "download"], action=fetch)
    paths = Apt(run=runner, log=lambda m: None).download([cached, missing], debs)
    assert runner.calls == [["apt-get", "download", "zlib1g:arm64=1:1.2"]]
    assert paths["zlib1g"].read_bytes() == new
    assert paths["zlib1g"].name == missing.deb_name
    assert sorted(p.name for p in debs.iterdir()) == sorted([cached.deb_name, missing.deb_name])


def test_download_rejects_a_checksum_mismatch_and_keeps_nothing(runner, tmp_path):
    wanted = record("bash", "5.2", "1" * 64)
    runner.on(["apt-get", "download"],
              action=lambda cmd, kw: Path(kw["cwd"], "bash_5.2_arm64.deb").write_bytes(b"evil"))
    with pytest.raises(PackageError, match="checksum .* differs from apt's index"):
        Apt(run=runner, log=lambda m: None).download([wanted], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_download_failure_reports_apts_message(runner, tmp_path):
    runner.on(["apt-get", "download"], returncode=100, stderr="E: Unable to locate package foo")
    with pytest.raises(PackageError, match="Unable to locate package foo"):
        Apt(run=runner, log=lambda m: None).download([record("foo")], tmp_path)


def test_missing_host_tools_name_the_apt_package():
    found = {"apt-get", "apt-cache", "dpkg", "dpkg-deb", "depmod", "modprobe"}
    messages = missing_host_tools(which=lambda t: f"/usr/bin/{t}" if t in found else None,
                                  extra_dirs=())
    assert "mkfs.ext4 is missing: install it with 'apt-get install e2fsprogs'" in messages
    assert any("qemu-system-aarch64" in m and "qemu-system-arm" in m for m in messages)
    assert len(messages) == 2
