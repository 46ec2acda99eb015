"""Tests of xenbundle.wiring: the parse-time decisions of the bundling classes.

The same cases run under real BitBake in tests/bitbake/test_parse_wiring.py; here
they are checked on plain values, with more corner cases.
"""

from __future__ import annotations

import os

import pytest
from xenbundle import BundleError, GuestSettings
from xenbundle.settings import MappingVariables, guest_settings
from xenbundle.wiring import (
    SETTING_VARIABLES,
    EntryContext,
    auto_bundled_recipes,
    built_guest_recipes,
    config_inputs,
    entry_inputs,
    entry_recipes,
    entry_vardeps,
    image_output_recipe,
    import_task_depends,
    is_built_file,
    is_yes,
    parse_yes_no,
    rootfs_task_depends,
    settings_vardeps,
    third_party_inputs,
    uses_shared_kernel,
)

SUFFIX = "-qemuarm64.rootfs"          # IMAGE_MACHINE_SUFFIX + IMAGE_NAME_SUFFIX
GUEST_LINK = "xen-guest-image-minimal" + SUFFIX
KERNEL = "Image"


# ----------------------------------------------------------------- yes/no words


@pytest.mark.parametrize("value", ["1", "y", "Y", "yes", "YES", "true", "True"])
def test_yes_words(value):
    assert parse_yes_no(value) is True
    assert is_yes(value) is True


@pytest.mark.parametrize("value", ["0", "n", "no", "No", "false", "FALSE", "", None])
def test_no_words_and_empty(value):
    assert parse_yes_no(value) is False
    assert is_yes(value) is False


@pytest.mark.parametrize("value", ["maybe", "on", "2", " 1", "yes please"])
def test_other_words_are_errors_or_no(value):
    with pytest.raises(ValueError, match="not a yes/no value"):
        parse_yes_no(value)
    assert is_yes(value) is False


# ----------------------------------------------------------------- image output names


@pytest.mark.parametrize("name, recipe", [
    (GUEST_LINK + ".ext4", "xen-guest-image-minimal"),
    ("my-guest" + SUFFIX + "-20261126120000.ext4.qcow2", "my-guest"),
    ("my-guest" + SUFFIX + ".wic.zst", "my-guest"),
    ("core-image-x" + SUFFIX + ".tar.bz2", "core-image-x"),
    ("g" + SUFFIX + ".squashfs-xz", "g"),
    ("/abs/dir/" + GUEST_LINK + ".ext3", "xen-guest-image-minimal"),
    ("lib32-guest+x" + SUFFIX + ".cpio.gz", "lib32-guest+x"),
])
def test_image_output_names_map_to_their_recipe(name, recipe):
    assert image_output_recipe(name, SUFFIX) == recipe


@pytest.mark.parametrize("name", [
    "vendor.img",                       # no suffix
    "Image",
    GUEST_LINK + ".cfg",                # not an image type
    GUEST_LINK + ".ext4x",
    GUEST_LINK + "-abc.ext4",           # only digits are a version
    SUFFIX + ".ext4",                   # no recipe name
    "guest-qemuarm64.ext4",             # machine suffix only
])
def test_other_names_map_to_nothing(name):
    assert image_output_recipe(name, SUFFIX) is None


def test_empty_suffix_maps_nothing():
    assert image_output_recipe("guest.ext4", "") is None


def test_custom_suffix_is_taken_literally():
    assert image_output_recipe("guest2-qemuarm64.ext4", "-qemuarm64") == "guest2"
    # "." in the suffix is not a regex wildcard.
    assert image_output_recipe("guest-qemuarm64Xrootfs.ext4", SUFFIX) is None


# ----------------------------------------------------------------- awaited recipes


def test_recipes_inferred_from_bundled_rootfs_names():
    bundled = f"{GUEST_LINK}.ext4:Image my-guest{SUFFIX}-20261126120000.ext4.qcow2:Image vendor.img:vmlinuz"
    assert built_guest_recipes(bundled, image_suffix=SUFFIX) == ["my-guest", "xen-guest-image-minimal"]


def test_recipes_from_guest_images_and_auto_bundle_overrides():
    overrides = {
        "XEN_GUEST_AUTO_BUNDLE:pn-auto-guest": "1",
        "XEN_GUEST_AUTO_BUNDLE:pn-off-guest": "0",
        "XEN_GUEST_AUTO_BUNDLE:pn-odd-guest": "maybe",
        "XEN_GUEST_AUTO_BUNDLE:pn-layered:qemuarm64": "yes",
        "XEN_GUEST_AUTO_BUNDLE": "1",       # the plain variable names no recipe
    }
    assert auto_bundled_recipes(overrides) == {"auto-guest", "layered"}
    assert built_guest_recipes("", guest_images=["listed-guest"], auto_bundle_overrides=overrides,
                               image_suffix=SUFFIX) == ["auto-guest", "layered", "listed-guest"]


def test_external_opt_out_by_file_or_recipe():
    bundled = f"vendor{SUFFIX}.ext4:Image other{SUFFIX}.ext4:Image mine{SUFFIX}.ext4:Image"
    assert built_guest_recipes(bundled, external=[f"vendor{SUFFIX}.ext4", "other"],
                               image_suffix=SUFFIX) == ["mine"]


def test_custom_name_suffixes():
    bundled = f"{GUEST_LINK}.ext4:Image guest2-qemuarm64.ext4:Image"
    assert built_guest_recipes(bundled, image_suffix="-qemuarm64") == ["guest2"]


def test_malformed_entries_are_ignored_while_parsing():
    bundled = f"noColon{SUFFIX}.ext4 a{SUFFIX}.ext4:b:c :Image ok{SUFFIX}.ext4:Image"
    assert built_guest_recipes(bundled, image_suffix=SUFFIX) == ["ok"]


def test_rootfs_depends_end_with_the_kernel():
    assert rootfs_task_depends(["a", "b"]) == [
        "a:do_image_complete", "b:do_image_complete", "virtual/kernel:do_deploy"]
    assert rootfs_task_depends([]) == ["virtual/kernel:do_deploy"]


# ----------------------------------------------------------------- built files


@pytest.mark.parametrize("name, built", [
    ("Image", True),
    ("Image--6.6-r0-qemuarm64-20261126.bin", True),
    ("Imagex", False),
    (GUEST_LINK + ".ext4", True),
    ("/deploy/" + GUEST_LINK + "-20261126.ext4", True),
    (f"xen-guest-bundle-{GUEST_LINK}.cfg", True),
    (f"xen-guest-bundle-other{SUFFIX}.cfg", False),
    (f"other{SUFFIX}.ext4", False),
    ("vendor.img", False),
])
def test_built_files(name, built):
    assert is_built_file(name, ["xen-guest-image-minimal"], image_suffix=SUFFIX,
                         kernel_imagetype=KERNEL) is built


def test_no_kernel_type_means_no_kernel_files():
    assert not is_built_file("Image", [], image_suffix=SUFFIX, kernel_imagetype="")


# ----------------------------------------------------------------- third-party inputs


VENDOR_CFG = 'name = "vendor"\nmemory = 64\ndisk = [ "file:vendor.img,xvda,rw" ]\nkernel = "vendor-kernel"\n'


def test_third_party_inputs_leave_out_built_files(tmp_path):
    dep = tmp_path
    (dep / (GUEST_LINK + ".ext4")).write_bytes(b"guest")
    (dep / "Image").write_bytes(b"kernel")
    (dep / "vendor.img").write_bytes(b"disk")
    (dep / "vendor-kernel").write_bytes(b"kernel")
    (dep / "xen-guest-bundle-vendor.cfg").write_text(VENDOR_CFG)
    (dep / (f"xen-guest-bundle-{GUEST_LINK}.cfg")).write_text(
        f'name = "auto"\nmemory = 64\ndisk = [ "file:{GUEST_LINK}.ext4,xvda,rw" ]\nkernel = "Image"\n')
    (dep / "loose.ext4").write_bytes(b"third-party rootfs")
    bundled = f"{GUEST_LINK}.ext4:Image loose.ext4:Image missing.ext4:Image /abs/x.ext4:/abs/k bad"

    recipes = built_guest_recipes(bundled, image_suffix=SUFFIX)
    inputs = third_party_inputs(str(dep), bundled, recipes, image_suffix=SUFFIX,
                                kernel_imagetype=KERNEL)
    assert inputs.configs == (str(dep / "xen-guest-bundle-vendor.cfg"),)
    assert inputs.files == tuple(sorted(str(dep / n) for n in (
        "loose.ext4", "missing.ext4", "vendor-kernel", "vendor.img", "xen-guest-bundle-vendor.cfg")))
    assert inputs.file_checksums() == sorted([
        f"{dep}/loose.ext4:True",
        f"{dep}/missing.ext4:False",
        f"{dep}/vendor-kernel:True",
        f"{dep}/vendor.img:True",
        f"{dep}/xen-guest-bundle-vendor.cfg:True",
    ])


def test_third_party_inputs_of_an_empty_deploy_dir(tmp_path):
    inputs = third_party_inputs(str(tmp_path), "", [], image_suffix=SUFFIX, kernel_imagetype=KERNEL)
    assert inputs.files == () and inputs.configs == ()


def test_glob_characters_in_the_deploy_dir_are_literal(tmp_path):
    dep = tmp_path / "deploy[1]"
    dep.mkdir()
    (dep / "xen-guest-bundle-vendor.cfg").write_text(VENDOR_CFG)
    (dep / "vendor.img").write_bytes(b"disk")
    (dep / "vendor-kernel").write_bytes(b"kernel")
    inputs = third_party_inputs(str(dep), "", [], image_suffix=SUFFIX, kernel_imagetype=KERNEL)
    assert [os.path.basename(p) for p in inputs.files] == [
        "vendor-kernel", "vendor.img", "xen-guest-bundle-vendor.cfg"]


def test_config_inputs_of_a_valid_config(tmp_path):
    (tmp_path / "xen-guest-bundle-vendor.cfg").write_text(VENDOR_CFG)
    (tmp_path / "vendor.img").write_bytes(b"disk")
    (tmp_path / "vendor-kernel").write_bytes(b"kernel")
    (tmp_path / "xen-guest-bundle-other.cfg").write_text('name = "other"\nkernel = "other-kernel"\n')
    assert config_inputs(str(tmp_path / "xen-guest-bundle-vendor.cfg"), str(tmp_path)) == sorted(
        str(tmp_path / n) for n in ("vendor-kernel", "vendor.img", "xen-guest-bundle-vendor.cfg"))


def test_config_inputs_of_a_broken_config_are_empty(tmp_path):
    (tmp_path / "xen-guest-bundle-broken.cfg").write_text('name = "broken"\nmemory = = 3\n')
    assert config_inputs(str(tmp_path / "xen-guest-bundle-broken.cfg"), str(tmp_path)) == []
    # A config whose kernel is missing does not validate either.
    (tmp_path / "xen-guest-bundle-vendor.cfg").write_text(VENDOR_CFG)
    assert config_inputs(str(tmp_path / "xen-guest-bundle-vendor.cfg"), str(tmp_path)) == []


def test_config_inputs_of_a_missing_deploy_dir_are_empty(tmp_path):
    assert config_inputs(str(tmp_path / "nope" / "x.cfg"), str(tmp_path / "nope")) == []


# ----------------------------------------------------------------- guest settings


def settings_of(values=None, flags=None, domain="web", entry=None):
    """guest_settings of plain mappings (the classes read the datastore the same way)."""
    return guest_settings(MappingVariables(values, flags), domain, entry)


def test_settings_from_the_defaults():
    assert settings_of() == GuestSettings(name="web")


def test_domain_varflags_win_and_are_stripped():
    flags = {"XEN_GUEST_MEMORY": {"web": " 768 "}, "XEN_GUEST_VCPUS": {"web": "2"},
             "XEN_GUEST_VIF": {"web": "bridge=xenbr0,mac=00:16:3e:00:00:01 bridge=xenbr1"},
             "XEN_GUEST_EXTRA": {"web": "root=/dev/xvda rw console=hvc0"},
             "XEN_GUEST_DISK_DEVICE": {"web": "xvdb"}}
    settings = settings_of({"XEN_GUEST_MEMORY": "256"}, flags)
    assert (settings.memory, settings.vcpus, settings.vdev) == (768, 2, "xvdb")
    assert settings.vif == ("bridge=xenbr0,mac=00:16:3e:00:00:01", "bridge=xenbr1")
    assert settings.extra == "root=/dev/xvda rw console=hvc0"


def test_an_empty_varflag_overrides_the_variable():
    assert settings_of(flags={"XEN_GUEST_VIF": {"web": ""}}).vif == ()


def test_empty_variables_are_empty_settings():
    settings = settings_of({"XEN_GUEST_VIF": "", "XEN_GUEST_EXTRA": ""})
    assert settings.vif == () and settings.extra == ""


@pytest.mark.parametrize("values, flags, message", [
    ({"XEN_GUEST_VCPUS": "two"}, None,
     'guest \'web\': XEN_GUEST_VCPUS = "two" is not a positive whole number; set it to e.g. "1"'),
    (None, {"XEN_GUEST_MEMORY": {"web": "lots"}},
     'guest \'web\': XEN_GUEST_MEMORY[web] = "lots" is not a positive whole number; set it to e.g. "512"'),
    ({"XEN_GUEST_MEMORY": "0"}, None, 'XEN_GUEST_MEMORY = "0" is not a positive'),
    ({"XEN_GUEST_MEMORY": ""}, None, 'XEN_GUEST_MEMORY = "" is not a positive'),
    ({"XEN_GUEST_MEMORY": "-5"}, None, 'XEN_GUEST_MEMORY = "-5" is not a positive'),
    ({"XEN_GUEST_MEMORY_DEFAULT": "x"}, None, 'XEN_GUEST_MEMORY_DEFAULT = "x" is not a positive'),
    ({"XEN_GUEST_DISK_DEVICE": "xvd a"}, None, 'XEN_GUEST_DISK_DEVICE = "xvd a" is not a virtual disk'),
])
def test_bad_values_name_variable_and_domain(values, flags, message):
    with pytest.raises(BundleError) as info:
        settings_of(values, flags)
    assert len(info.value.problems) == 1
    assert message in info.value.problems[0]


def test_settings_vardeps_list_defaults_and_guests_not_bitbake_flags():
    variables = MappingVariables(flags={
        "XEN_GUEST_MEMORY": {"web": "1", "doc": "x", "_content": "x", "db": "2"},
        "XEN_GUEST_VIF": {"vardeps": "x"}, "XEN_GUEST_EXTRA": {"db": "x"}})
    assert settings_vardeps(variables, ["doc", "vardeps"]) == [
        "XEN_GUEST_MEMORY", "XEN_GUEST_MEMORY[db]", "XEN_GUEST_MEMORY[web]",
        "XEN_GUEST_MEMORY_DEFAULT", "XEN_GUEST_VCPUS", "XEN_GUEST_VCPUS_DEFAULT",
        "XEN_GUEST_VIF", "XEN_GUEST_VIF_DEFAULT", "XEN_GUEST_EXTRA", "XEN_GUEST_EXTRA[db]",
        "XEN_GUEST_EXTRA_DEFAULT", "XEN_GUEST_DISK_DEVICE", "XEN_GUEST_DISK_DEVICE_DEFAULT"]
    assert SETTING_VARIABLES == ("XEN_GUEST_MEMORY", "XEN_GUEST_VCPUS", "XEN_GUEST_VIF",
                                 "XEN_GUEST_EXTRA", "XEN_GUEST_DISK_DEVICE")


@pytest.mark.timeout(60)
def test_third_party_inputs_leave_out_fifos_and_folders(tmp_path):
    """BitBake reads every file-checksums entry: a FIFO listed there would hang the parse."""
    dep = tmp_path
    os.mkfifo(dep / "xen-guest-bundle-fifo.cfg")
    (dep / "xen-guest-bundle-dir.cfg").mkdir()
    os.mkfifo(dep / "fifo.ext4")
    (dep / "xen-guest-bundle-vendor.cfg").write_text(VENDOR_CFG)
    (dep / "vendor.img").write_bytes(b"disk")
    (dep / "vendor-kernel").write_bytes(b"kernel")
    inputs = third_party_inputs(str(dep), "fifo.ext4:vendor-kernel", [], image_suffix=SUFFIX,
                                kernel_imagetype=KERNEL)
    assert inputs.configs == (str(dep / "xen-guest-bundle-vendor.cfg"),)
    assert [os.path.basename(p) for p in inputs.files] == [
        "vendor-kernel", "vendor.img", "xen-guest-bundle-vendor.cfg"]


# ----------------------------------------------------------------- recipe entries


def entries(value, flags=None, variable="BUNDLED_XEN_GUESTS"):
    return MappingVariables({variable: value}, flags)


def test_entry_recipes_skip_external_imported_and_malformed():
    variables = entries("web:autostart vendor:external alpine bad:tag web2 :x",
                        {"XEN_GUEST_SOURCE_TYPE": {"alpine": "rootfs_dir"}})
    assert entry_recipes(variables, "BUNDLED_XEN_GUESTS") == ["web", "web2"]


def test_entry_recipes_join_the_other_awaited_recipes():
    recipes = built_guest_recipes("", guest_images=["listed"], external=["web2"],
                                  entry_recipes=["web", "web2"])
    assert recipes == ["listed", "web"]


def test_shared_kernel_and_import_tools():
    variables = entries("a b c d", {
        "XEN_GUEST_KERNEL": {"a": "vmlinuz", "b": "none", "c": "bzImage", "d": "  "},
        "XEN_GUEST_SOURCE_TYPE": {"a": "qcow2", "b": "rootfs_dir", "c": "raw"}},
        "XEN_GUEST_BUNDLES")
    assert uses_shared_kernel(variables, "XEN_GUEST_BUNDLES")   # d: an empty flag is unset
    assert import_task_depends(variables, "XEN_GUEST_BUNDLES") == [
        "e2fsprogs-native:do_populate_sysroot", "qemu-system-native:do_populate_sysroot"]
    assert not uses_shared_kernel(entries("a", {"XEN_GUEST_KERNEL": {"a": "none"}}),
                                  "BUNDLED_XEN_GUESTS")


def test_entry_vardeps_name_every_entry_flag():
    variables = entries("web", {"XEN_GUEST_ROOTFS": {"web": "x.ext4"},
                                "XEN_GUEST_NAME": {"web": "w"}, "XEN_GUEST_MEMORY": {"w": "1"}})
    deps = entry_vardeps(variables, "BUNDLED_XEN_GUESTS", ["doc"])
    for name in ("BUNDLED_XEN_GUESTS", "XEN_GUEST_ROOTFS[web]", "XEN_GUEST_NAME[web]",
                 "XEN_GUEST_MEMORY[w]", "XEN_GUEST_IMAGE_FSTYPE", "XEN_GUEST_IMAGE_SIZE_DEFAULT",
                 "XEN_GUEST_KERNEL", "XEN_GUEST_CONFIG_FILE", "XEN_GUEST_SOURCE_TYPE",
                 "XEN_GUEST_SOURCE_FILE", "XEN_GUEST_IMAGE_SIZE", "XEN_GUEST_MEMORY_DEFAULT"):
        assert name in deps


def test_entry_inputs_are_third_party_files_and_custom_configs(tmp_path):
    dep, unpack = tmp_path / "deploy", tmp_path / "sources"
    dep.mkdir()
    unpack.mkdir()
    (dep / "vendor-qemuarm64.rootfs.ext4").write_bytes(b"v")
    (dep / "vendor-kernel").write_bytes(b"k")
    (dep / "extra.img").write_bytes(b"e")
    (unpack / "web.cfg").write_text('name = "web"\ndisk = ["file:x,xvda,rw", "file:extra.img,xvdb,rw"]\n'
                                    'ramdisk = "initrd"\n')
    variables = entries("web vendor:external", {
        "XEN_GUEST_KERNEL": {"vendor": "vendor-kernel"},
        "XEN_GUEST_CONFIG_FILE": {"web": "web.cfg"}})
    ctx = EntryContext(deploy_dir=str(dep), machine="qemuarm64", unpack_dir=str(unpack),
                       image_suffix=SUFFIX, kernel_imagetype=KERNEL, built_recipes=("web",))
    inputs = entry_inputs(variables, "BUNDLED_XEN_GUESTS", ctx)
    assert inputs.configs == (str(unpack / "web.cfg"),)
    assert inputs.files == tuple(sorted([
        str(dep / "extra.img"), str(dep / "initrd"), str(dep / "vendor-kernel"),
        str(dep / "vendor-qemuarm64.ext4"), str(dep / "vendor-qemuarm64.rootfs.ext4"),
        str(unpack / "vendor-kernel"), str(unpack / "web.cfg")]))
    assert [e.split(":")[-1] for e in inputs.file_checksums()] == [
        "True", "False", "True", "False", "True", "False", "True"]


def test_entry_inputs_and_vardeps_have_the_ramdisk(tmp_path):
    """XEN_GUEST_RAMDISK (ours) of a generated config is read like a kernel name: checksummed
    in the deploy dir and UNPACKDIR, also for imported entries; its varflags are in the signature."""
    dep, unpack = tmp_path / "deploy", tmp_path / "sources"
    dep.mkdir()
    unpack.mkdir()
    (dep / "initrd.gz").write_bytes(b"i")
    variables = entries("vendor:external imported off:external", {
        "XEN_GUEST_ROOTFS": {"vendor": "v.ext4", "off": "o.ext4"},
        "XEN_GUEST_RAMDISK": {"vendor": "initrd.gz", "imported": "initrd.gz", "off": "none"},
        "XEN_GUEST_SOURCE_TYPE": {"imported": "rootfs_dir"},
        "XEN_GUEST_SOURCE_FILE": {"imported": "rootfs.tar"}})
    ctx = EntryContext(deploy_dir=str(dep), machine="qemuarm64", unpack_dir=str(unpack),
                       image_suffix=SUFFIX, kernel_imagetype=KERNEL, built_recipes=())
    assert entry_inputs(variables, "BUNDLED_XEN_GUESTS", ctx).files == tuple(sorted([
        str(dep / "initrd.gz"), str(dep / "o.ext4"), str(dep / "v.ext4"),
        str(unpack / "initrd.gz")]))
    deps = entry_vardeps(variables, "BUNDLED_XEN_GUESTS", ["doc"])
    assert {"XEN_GUEST_RAMDISK", "XEN_GUEST_RAMDISK[vendor]", "XEN_GUEST_RAMDISK[off]"} <= set(deps)
