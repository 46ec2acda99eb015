"""Tests of xenbundle.settings: per-guest settings in both key forms, and recipe entries.

The precedence (docs/bundling.md, "Settings: what wins"):
1. a varflag keyed by the entry or by the domain name (two different values: error);
2. the plain variable, which defaults to meta-virtualization's *_DEFAULT (both set to
   different values: error);
3. the classes' weak defaults.
"""

from __future__ import annotations

import pytest
from xenbundle import BundleError, GuestSettings
from xenbundle.settings import (
    WEAK_DEFAULTS,
    ImportSource,
    MappingVariables,
    flags_for_guest,
    guest_requests,
    guest_settings,
    vardeps,
)


def settings(values=None, flags=None, domain="web", entry=None):
    return guest_settings(MappingVariables(values, flags), domain, entry)


def problems(values=None, flags=None, domain="web", entry=None):
    with pytest.raises(BundleError) as info:
        settings(values, flags, domain, entry)
    return info.value.problems


# ------------------------------------------------------------------ precedence


def test_weak_defaults():
    assert settings() == GuestSettings(name="web", memory=512, vcpus=1, vif=("bridge=xenbr0",),
                                       extra="root=/dev/xvda ro console=hvc0 ip=dhcp", vdev="xvda")
    assert WEAK_DEFAULTS["XEN_GUEST_IMAGE_SIZE_DEFAULT"] == ""


def test_meta_virtualization_defaults_apply_when_ours_are_unset():
    s = settings({"XEN_GUEST_MEMORY_DEFAULT": "1024", "XEN_GUEST_VCPUS_DEFAULT": "2",
                  "XEN_GUEST_VIF_DEFAULT": "bridge=br1", "XEN_GUEST_EXTRA_DEFAULT": "ro",
                  "XEN_GUEST_DISK_DEVICE_DEFAULT": "xvdb"})
    assert (s.memory, s.vcpus, s.vif, s.extra, s.vdev) == (1024, 2, ("bridge=br1",), "ro", "xvdb")


def test_the_plain_variable_is_the_default_of_every_guest():
    assert settings({"XEN_GUEST_MEMORY": "256"}).memory == 256


def test_plain_and_default_variable_may_agree():
    assert settings({"XEN_GUEST_MEMORY": "256", "XEN_GUEST_MEMORY_DEFAULT": " 256 "}).memory == 256


def test_plain_and_default_variable_disagreeing_is_an_error_naming_both():
    (problem,) = problems({"XEN_GUEST_MEMORY": "256", "XEN_GUEST_MEMORY_DEFAULT": "1024"})
    assert problem == (
        "guest 'web': XEN_GUEST_MEMORY = \"256\" and XEN_GUEST_MEMORY_DEFAULT = \"1024\" "
        "(meta-virtualization's name) both set the default of every guest, to different "
        "values: remove one of them")


def test_a_guest_flag_wins_over_the_defaults_and_hides_their_conflict():
    s = settings({"XEN_GUEST_MEMORY": "256", "XEN_GUEST_MEMORY_DEFAULT": "1024"},
                 {"XEN_GUEST_MEMORY": {"web": "768"}})
    assert s.memory == 768


@pytest.mark.parametrize("key", ["recipe", "web"])
def test_entry_key_and_domain_key_both_reach_the_guest(key):
    s = settings(flags={"XEN_GUEST_VCPUS": {key: "3"}}, domain="web", entry="recipe")
    assert s.vcpus == 3


def test_entry_and_domain_keys_with_one_value_are_fine():
    s = settings(flags={"XEN_GUEST_VCPUS": {"recipe": "3", "web": "3 "}}, entry="recipe")
    assert s.vcpus == 3


def test_entry_and_domain_keys_with_two_values_are_an_error_naming_both():
    (problem,) = problems(flags={"XEN_GUEST_EXTRA": {"recipe": "ro", "web": "rw"}},
                          entry="recipe")
    assert problem == (
        "guest 'web': XEN_GUEST_EXTRA[recipe] = \"ro\" (keyed by the entry) and "
        "XEN_GUEST_EXTRA[web] = \"rw\" (keyed by the domain name) are two values for one "
        "guest: remove one of them")


def test_every_problem_of_a_guest_is_listed():
    found = problems({"XEN_GUEST_VCPUS": "0"}, {"XEN_GUEST_MEMORY": {"web": "x"},
                                                "XEN_GUEST_DISK_DEVICE": {"web": "/dev/xvda"}})
    assert len(found) == 3


def test_flags_for_guest_lists_both_key_forms():
    variables = MappingVariables(flags={"XEN_GUEST_MEMORY": {"r": "1", "other": "2"},
                                        "XEN_GUEST_VIF": {"w": ""}})
    assert flags_for_guest(variables, "w", "r") == ["XEN_GUEST_MEMORY[r]", "XEN_GUEST_VIF[w]"]


def test_vardeps_keep_order_and_drop_internal_flags():
    variables = MappingVariables(flags={"A": {"z": "1", "a": "1", "_x": "1", "doc": "d"}})
    assert vardeps(variables, ["A", "B", "A"], ["doc"]) == ["A", "A[a]", "A[z]", "B"]


# ------------------------------------------------------------------ entries


def requests(value, flags=None, values=None, imports=False, variable="BUNDLED_XEN_GUESTS"):
    variables = MappingVariables({variable: value, **(values or {})}, flags)
    return guest_requests(variables, variable, imports_allowed=imports)


def test_request_of_a_plain_entry():
    (req,) = requests("web:autostart").requests
    assert (req.domain, req.rootfs, req.kernel, req.config_file, req.image_fstype) == \
        ("web", None, None, None, "ext4")
    assert req.settings == GuestSettings(name="web") and not req.problems and not req.name_set
    assert req.label == "guest 'web' (BUNDLED_XEN_GUESTS entry 1 'web:autostart')"


def test_request_with_every_entry_flag():
    (req,) = requests("web", {
        "XEN_GUEST_NAME": {"web": "www"}, "XEN_GUEST_ROOTFS": {"web": " web.img "},
        "XEN_GUEST_KERNEL": {"web": "none"}, "XEN_GUEST_CONFIG_FILE": {"web": "/x.cfg"},
        "XEN_GUEST_IMAGE_FSTYPE": {"web": "ext4.qcow2"}, "XEN_GUEST_MEMORY": {"www": "64"}}).requests
    assert (req.domain, req.rootfs, req.kernel, req.config_file, req.image_fstype) == \
        ("www", "web.img", "none", "/x.cfg", "ext4.qcow2")
    assert req.settings.memory == 64 and req.name_set


def test_plain_image_fstype_applies_to_every_entry():
    (req,) = requests("web", values={"XEN_GUEST_IMAGE_FSTYPE": "wic"}).requests
    assert req.image_fstype == "wic"


@pytest.mark.parametrize("flags, message", [
    ({"XEN_GUEST_NAME": {"web": "123"}}, "XEN_GUEST_NAME[web]: domain name '123' is all digits"),
    ({"XEN_GUEST_IMAGE_FSTYPE": {"web": "ext 4"}}, 'XEN_GUEST_IMAGE_FSTYPE = "ext 4" is not'),
    ({"XEN_GUEST_SOURCE_TYPE": {"web": "raw"}}, "needs the fetched source of a recipe"),
    ({"XEN_GUEST_SOURCE_FILE": {"web": "x"}},
     "XEN_GUEST_SOURCE_FILE[web] is set but XEN_GUEST_SOURCE_TYPE[web] is not"),
])
def test_request_problems_name_the_flag(flags, message):
    (req,) = requests("web", flags).requests
    assert any(message in p for p in req.problems), req.problems


def test_imports_in_bundle_recipes():
    flags = {"XEN_GUEST_SOURCE_TYPE": {"a": "rootfs_dir", "b": "qcow2"},
             "XEN_GUEST_SOURCE_FILE": {"a": "a.tar", "b": "b.qcow2"},
             "XEN_GUEST_IMAGE_SIZE": {"a": "128"}}
    a, b = requests("a:external b:external", flags, imports=True,
                    variable="XEN_GUEST_BUNDLES").requests
    assert a.source == ImportSource("rootfs_dir", "a.tar", 128, "XEN_GUEST_IMAGE_SIZE[a]")
    assert b.source == ImportSource("qcow2", "b.qcow2", None, "XEN_GUEST_IMAGE_SIZE_DEFAULT")


def test_import_size_default_and_computed():
    flags = {"XEN_GUEST_SOURCE_TYPE": {"a": "rootfs_dir"}, "XEN_GUEST_SOURCE_FILE": {"a": "a"}}
    (a,) = requests("a", flags, imports=True).requests
    assert a.source.size_mib is None
    (a,) = requests("a", flags, {"XEN_GUEST_IMAGE_SIZE_DEFAULT": "256"}, imports=True).requests
    assert (a.source.size_mib, a.source.size_where) == (256, "XEN_GUEST_IMAGE_SIZE_DEFAULT")


@pytest.mark.parametrize("flags, message", [
    ({"XEN_GUEST_SOURCE_TYPE": {"a": "iso"}, "XEN_GUEST_SOURCE_FILE": {"a": "a"}},
     'XEN_GUEST_SOURCE_TYPE[a] = "iso" is not an import type; use one of rootfs_dir, qcow2, ext4, raw'),
    ({"XEN_GUEST_SOURCE_TYPE": {"a": "raw"}}, "XEN_GUEST_SOURCE_FILE[a] is not set"),
    ({"XEN_GUEST_SOURCE_TYPE": {"a": "raw"}, "XEN_GUEST_SOURCE_FILE": {"a": "a"},
      "XEN_GUEST_IMAGE_SIZE": {"a": "10"}}, "XEN_GUEST_IMAGE_SIZE[a] only applies to the import type rootfs_dir"),
    ({"XEN_GUEST_SOURCE_TYPE": {"a": "rootfs_dir"}, "XEN_GUEST_SOURCE_FILE": {"a": "a"},
      "XEN_GUEST_IMAGE_SIZE": {"a": "1.5"}}, 'XEN_GUEST_IMAGE_SIZE[a] = "1.5" is not a positive whole number of MiB'),
    ({"XEN_GUEST_SOURCE_TYPE": {"a": "raw"}, "XEN_GUEST_SOURCE_FILE": {"a": "a"},
      "XEN_GUEST_ROOTFS": {"a": "x.img"}}, "XEN_GUEST_ROOTFS[a] and XEN_GUEST_SOURCE_TYPE[a] both give"),
])
def test_import_problems(flags, message):
    (req,) = requests("a", flags, imports=True).requests
    assert any(message in p for p in req.problems), req.problems


def test_malformed_entries_are_problems_of_the_set():
    result = requests("a b:nope")
    assert [r.entry.name for r in result.requests] == ["a"]
    assert len(result.problems) == 1 and "entry 2 'b:nope'" in result.problems[0]
