"""xenbundle.dom0less: marking bundled guests dom0less, their settings and the plan-time checks."""

from __future__ import annotations

import pytest
from xenbundle.dom0less import (
    DEFAULT_BOOTARGS,
    Dom0lessGuest,
    dom0less_guests,
    xl_bundled_guests,
)
from xenbundle.entries import parse_guest_entries
from xenbundle.errors import BundleError
from xenbundle.settings import MappingVariables, guest_requests

RAMDISK = "tiny-qemuarm64.rootfs.cpio.gz"


def _vars(values: dict[str, str], flags: dict[str, dict[str, str]] | None = None) -> MappingVariables:
    return MappingVariables(values, flags or {})


def _guests(values: dict[str, str], flags: dict[str, dict[str, str]] | None = None, **kwargs: object):
    options: dict[str, object] = {"target_arch": "aarch64", "kernel_imagetype": "Image", **kwargs}
    return dom0less_guests(_vars(values, flags), **options)  # type: ignore[arg-type]


def test_recipe_entry_with_the_tag_and_every_setting():
    guests = _guests({"BUNDLED_XEN_GUESTS": "web tiny:dom0less"},
                     {"XEN_GUEST_RAMDISK": {"tiny": RAMDISK}, "XEN_GUEST_MEMORY": {"tiny": "64"},
                      "XEN_GUEST_VCPUS": {"tiny": "2"},
                      "XEN_GUEST_DOM0LESS_BOOTARGS": {"tiny": "console=ttyAMA0 rdinit=/bin/sh"},
                      "XEN_GUEST_DOM0LESS_ENHANCED": {"tiny": "no"}, "XEN_GUEST_KERNEL": {"tiny": "Image-tiny"}})
    assert guests == [Dom0lessGuest("tiny", "BUNDLED_XEN_GUESTS entry 2 'tiny:dom0less'", "Image-tiny", RAMDISK,
                                    64, 2, "console=ttyAMA0 rdinit=/bin/sh", False)]


def test_defaults_enhanced_on_kernel_imagetype_default_bootargs_and_memory():
    (guest,) = _guests({"BUNDLED_XEN_GUESTS": "tiny:dom0less"}, {"XEN_GUEST_RAMDISK": {"tiny": RAMDISK}})
    assert (guest.kernel, guest.memory_mib, guest.vcpus, guest.bootargs, guest.enhanced) == (
        "Image", 512, 1, DEFAULT_BOOTARGS, True)


def test_xen_bundled_guests_entry_named_in_xen_guest_dom0less():
    values = {"XEN_BUNDLED_GUESTS": f"a-qemuarm64.rootfs.ext4:Image {RAMDISK}:Image",
              "XEN_GUEST_DOM0LESS": "tiny-qemuarm64", "XEN_GUEST_MEMORY": "128"}
    (guest,) = _guests(values)
    assert (guest.name, guest.ramdisk, guest.kernel, guest.memory_mib) == ("tiny-qemuarm64", RAMDISK, "Image", 128)
    assert xl_bundled_guests(values["XEN_BUNDLED_GUESTS"], [guest]) == "a-qemuarm64.rootfs.ext4:Image"


def test_the_tag_is_known_and_the_entry_is_not_an_xl_guest():
    (entry,) = parse_guest_entries("tiny:dom0less:external")
    assert entry.tags == {"dom0less", "external"}
    requests = guest_requests(_vars({"BUNDLED_XEN_GUESTS": "tiny:dom0less web"}), "BUNDLED_XEN_GUESTS")
    assert [r.entry.name for r in requests.requests] == ["web"]


def test_no_guest_no_problem_even_on_x86():
    assert _guests({"BUNDLED_XEN_GUESTS": "web"}, target_arch="x86_64") == []


@pytest.mark.parametrize("values, flags, kwargs, message", [
    ({"BUNDLED_XEN_GUESTS": "tiny:dom0less"}, {}, {},
     (r"dom0less guest 'tiny' \(BUNDLED_XEN_GUESTS entry 1 'tiny:dom0less'\): no ramdisk: .*"
     r"set XEN_GUEST_RAMDISK\[tiny\]")),
    ({"BUNDLED_XEN_GUESTS": "tiny:dom0less"}, {"XEN_GUEST_RAMDISK": {"tiny": RAMDISK}}, {"target_arch": "x86_64"},
     r"need Xen on Arm, this machine's TARGET_ARCH is \"x86_64\": build for an Arm MACHINE"),
    ({"BUNDLED_XEN_GUESTS": "tiny:dom0less"},
     {"XEN_GUEST_RAMDISK": {"tiny": RAMDISK}, "XEN_GUEST_ROOTFS": {"tiny": "tiny.ext4"}}, {},
     r"XEN_GUEST_ROOTFS\[tiny\] is set, but a dom0less guest has no disk"),
    ({"BUNDLED_XEN_GUESTS": "tiny:dom0less"}, {"XEN_GUEST_RAMDISK": {"tiny": "tiny.ext4"}}, {},
     r"the ramdisk \"tiny.ext4\" is not a cpio image .*a disk image cannot be"),
    ({"XEN_BUNDLED_GUESTS": "tiny-qemuarm64.rootfs.ext4:Image", "XEN_GUEST_DOM0LESS": "tiny-qemuarm64"}, {}, {},
     r"ramdisk \"tiny-qemuarm64.rootfs.ext4\" is not a cpio image"),
    ({"BUNDLED_XEN_GUESTS": "tiny:dom0less:autostart"}, {"XEN_GUEST_RAMDISK": {"tiny": RAMDISK}}, {},
     r"the tags dom0less and autostart: .*remove ':autostart'"),
    ({"XEN_GUEST_DOM0LESS": "ghost"}, {}, {}, r"XEN_GUEST_DOM0LESS names \"ghost\", which no XEN_BUNDLED_GUESTS"),
    ({"BUNDLED_XEN_GUESTS": "tiny:dom0less"},
     {"XEN_GUEST_RAMDISK": {"tiny": RAMDISK}, "XEN_GUEST_MEMORY": {"tiny": "900"}},
     {"ram_mib": 1024, "dom0_mib": 384},
     r"'tiny' 900 MiB\) do not fit: .*need 1324 MiB, the machine has 1024 MiB \(QB_MEM\); lower XEN_GUEST_MEMORY"),
    ({"BUNDLED_XEN_GUESTS": "tiny:dom0less"},
     {"XEN_GUEST_RAMDISK": {"tiny": RAMDISK}, "XEN_GUEST_DOM0LESS_ENHANCED": {"tiny": "maybe"}}, {},
     r"XEN_GUEST_DOM0LESS_ENHANCED\[tiny\] = \"maybe\" is neither on"),
    ({"BUNDLED_XEN_GUESTS": "tiny:dom0less"},
     {"XEN_GUEST_RAMDISK": {"tiny": RAMDISK}, "XEN_GUEST_DOM0LESS_BOOTARGS": {"tiny": 'a="b"'}}, {},
     r"holds a quote"),
    ({"BUNDLED_XEN_GUESTS": "tiny:dom0less"},
     {"XEN_GUEST_RAMDISK": {"tiny": RAMDISK}, "XEN_GUEST_MEMORY": {"tiny": "lots"}}, {},
     r"XEN_GUEST_MEMORY\[tiny\] = \"lots\" is not a positive whole number"),
])
def test_problems_name_the_variable_the_value_and_the_fix(values, flags, kwargs, message):
    with pytest.raises(BundleError, match=message):
        _guests(values, flags, **kwargs)


def test_every_problem_is_reported_at_once():
    with pytest.raises(BundleError) as caught:
        _guests({"BUNDLED_XEN_GUESTS": "a:dom0less b:dom0less"}, {"XEN_GUEST_RAMDISK": {"b": "b.wic"}})
    assert len(caught.value.problems) == 2


def test_guests_that_fit_pass_the_memory_check():
    guests = _guests({"BUNDLED_XEN_GUESTS": "tiny:dom0less"},
                     {"XEN_GUEST_RAMDISK": {"tiny": RAMDISK}, "XEN_GUEST_MEMORY": {"tiny": "96"}},
                     ram_mib=1024, dom0_mib=384)
    assert [g.memory_mib for g in guests] == [96]
