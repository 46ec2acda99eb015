"""Tests of XEN_BUNDLED_GUESTS parsing, domain names and generated configs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from xenbundle import BundleError, GuestSettings, parse_bundled_guests
from xenbundle.disk import parse_disk
from xenbundle.guests import (
    auto_bundle_config,
    check_domain_name,
    domain_name_error,
    domain_name_from_rootfs,
    generate_config,
)
from xenbundle.xlcfg import parse


def test_entries_are_split_on_whitespace():
    entries = parse_bundled_guests("  a.rootfs.ext4:Image \n b.ext4:zImage\t")
    assert [(e.position, e.rootfs, e.kernel) for e in entries] == [
        (1, "a.rootfs.ext4", "Image"), (2, "b.ext4", "zImage")]
    assert parse_bundled_guests("") == []


def test_every_malformed_entry_is_reported_with_position_text_and_fix():
    with pytest.raises(BundleError) as info:
        parse_bundled_guests("ok.ext4:Image noColon a:b:c :Image")
    problems = info.value.problems
    assert len(problems) == 3
    assert problems[0].startswith("XEN_BUNDLED_GUESTS entry 2 'noColon' has no ':'")
    assert "entry 3 'a:b:c' has 2 ':'" in problems[1]
    assert "entry 4 ':Image' has an empty" in problems[2]
    assert all("ROOTFS:KERNEL" in p for p in problems)


def test_lenient_parsing_leaves_malformed_entries_out():
    entries = parse_bundled_guests("ok.ext4:Image noColon a:b:c :Image b.ext4:zImage", lenient=True)
    assert [(e.position, e.rootfs, e.kernel) for e in entries] == [
        (1, "ok.ext4", "Image"), (5, "b.ext4", "zImage")]


@pytest.mark.parametrize("rootfs,name", [
    ("xen-guest-image-minimal-qemuarm64.rootfs.ext4", "xen-guest-image-minimal-qemuarm64"),
    ("xen-guest-image-minimal-qemuarm64.rootfs-20241111222814.ext4", "xen-guest-image-minimal-qemuarm64"),
    ("guest.rootfs.ext4.qcow2", "guest"),
    ("guest.btrfs", "guest"),
    ("guest.ext3", "guest"),
    ("guest.ext2", "guest"),
    ("guest.qcow2", "guest"),
    ("guest.img", "guest"),
    ("guest.raw", "guest"),
    ("guest.wic", "guest"),
    ("sub/dir/my guest.ext4", "my-guest"),
    ("plain", "plain"),
])
def test_domain_name_from_rootfs(rootfs, name):
    assert domain_name_from_rootfs(rootfs) == name
    assert domain_name_error(name) is None


@pytest.mark.parametrize("name,needle", [
    ("", "empty"), ("123", "all digits"), ("Domain-0", "dom0"), ("a/b", "characters"),
    ("-x", "start"), ("x" * 65, "longer"),
])
def test_bad_domain_names(name, needle):
    assert needle in domain_name_error(name)
    with pytest.raises(ValueError):
        check_domain_name(name)


def test_generated_config_is_readable_and_parses_to_the_settings():
    s = GuestSettings(name="web", memory=256, vcpus=2, vif=("bridge=xenbr0", "bridge=xenbr1"),
                      extra="root=/dev/xvda rw", ramdisk="initrd")
    text = generate_config(s, "web.rootfs.ext4", "Image")
    cfg = parse(text).settings()
    assert cfg["name"] == "web" and cfg["memory"] == "256" and cfg["vcpus"] == "2"
    assert cfg["kernel"] == "Image" and cfg["ramdisk"] == "initrd"
    assert cfg["vif"] == ["bridge=xenbr0", "bridge=xenbr1"]
    assert "type" not in cfg   # xl picks pvh on Arm
    disk = parse_disk(cfg["disk"][0])
    assert (disk.target, disk.vdev, disk.access, disk.format) == ("web.rootfs.ext4", "xvda", "rw", "raw")
    assert text.startswith("# ")


def test_generated_config_for_qcow2_and_odd_names():
    s = GuestSettings(name="q", type="pvh")
    cfg = parse(generate_config(s, "a,b.qcow2", "Image")).settings()
    disk = parse_disk(cfg["disk"][0])
    assert disk.target == "a,b.qcow2" and disk.format == "qcow2"
    assert cfg["type"] == "pvh"


def test_generate_config_rejects_bad_settings():
    with pytest.raises(ValueError) as info:
        generate_config(GuestSettings(name="1", memory=0), "d", "k")
    assert "all digits" in str(info.value) and "memory" in str(info.value)


def test_auto_bundle_config_uses_the_same_generator():
    s = GuestSettings(name="auto")
    text = auto_bundle_config(s, "img.rootfs.ext4", "Image")
    assert parse(text).settings() == parse(generate_config(s, "img.rootfs.ext4", "Image")).settings()


names = st.from_regex(r"\A[A-Za-z][A-Za-z0-9._+-]{0,20}\Z")
files = st.text(alphabet=st.characters(blacklist_characters="\n\x00", blacklist_categories=("Cs",)),
                min_size=1, max_size=30).filter(lambda t: not t.endswith(",") and t.strip() == t)


@hsettings(max_examples=200, deadline=None)
@given(names, st.integers(1, 1 << 20), st.integers(1, 64), files, files,
       st.lists(st.text(alphabet="abcdefgh=,:. ", max_size=20), max_size=3),
       st.text(max_size=40).filter(lambda t: "\x00" not in t))
def test_property_generated_configs_parse(name, memory, vcpus, disk, kernel, vif, extra):
    s = GuestSettings(name=name, memory=memory, vcpus=vcpus, vif=tuple(vif), extra=extra)
    cfg = parse(generate_config(s, disk, kernel)).settings()
    assert cfg["name"] == name and cfg["memory"] == str(memory) and cfg["kernel"] == kernel
    assert cfg["extra"] == extra and cfg["vif"] == list(vif)
    assert parse_disk(cfg["disk"][0]).target == disk


def test_nul_in_a_setting_is_a_problem_not_a_crash():
    settings = GuestSettings(name="web", extra="console=hvc0\0", vif=("bridge=xenbr0\0",))
    problems = settings.problems()
    assert any(p.startswith("extra ") and "NUL" in p for p in problems)
    assert any(p.startswith("vif ") and "NUL" in p for p in problems)
