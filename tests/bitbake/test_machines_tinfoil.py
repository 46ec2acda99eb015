"""What xen-image-minimal sets per machine, read with BitBake's tinfoil from a real configuration.

For scarthgap and wrynose, and for qemuarm64, qemuarm and qemux86-64, a build directory with the
real oe-core, meta-openembedded, meta-virtualization and this layer (the environments that
``/work/shared/tools/setup-oe-env`` makes in ``/opt/oe-env/<release>``) is configured like the
layer's kas files; ``tinfoil_probe.py`` parses the image recipe there (configuration, then the one
recipe: seconds, not the minutes of a full parse) and the tests compare what BitBake holds with
what xenboot composes: the runqemu variables (QB_*), IMAGE_INSTALL, IMAGE_FSTYPES, WKS_FILE and
the syslinux/grub configurations. BitBake refuses root: as root, the probe runs as ``OE_USER``
(``builder``), who must be able to read this checkout. Marked ``oecore``: without the
environments the tests fail and say how to make them (``-m 'not oecore'`` leaves them out).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pwd
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import xenboot

LAYER = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(LAYER / "scripts" / "oe"))
import oeglue

pytestmark = pytest.mark.oecore

RELEASES = ("scarthgap", "wrynose")
MACHINES = ("qemuarm64", "qemuarm", "qemux86-64")
BUILD_USER = os.environ.get("OE_USER", "builder")
IMAGE = LAYER / "recipes-core" / "images" / "xen-image-minimal.bb"
GUEST = LAYER / "recipes-core" / "images" / "xen-guest-image-minimal.bb"
VARS = ["TARGET_ARCH", "KERNEL_IMAGETYPE", "MACHINE_FEATURES", "QB_SYSTEM_NAME", "QB_MACHINE", "QB_CPU",
        "QB_CPU_KVM", "QB_MEM", "QB_DEFAULT_KERNEL", "QB_DEFAULT_FSTYPE", "QB_FSINFO", "QB_OPT_APPEND",
        "QB_KERNEL_CMDLINE_APPEND", "QB_ROOTFS_OPT", "QB_TCPSERIAL_OPT", "SERIAL_CONSOLES", "QB_XEN_CMDLINE",
        "QB_XEN_CONSOLE", "QB_XEN_DOM0_BOOTARGS", "QB_XEN_DOM0_KERNEL", "IMAGE_INSTALL", "IMAGE_FSTYPES",
        "WKS_FILE", "WKS_FULL_PATH", "_WKS_TEMPLATE", "XEN_REF_SYSLINUX_CFG", "XEN_REF_GRUB_CFG",
        "IMAGE_EFI_BOOT_FILES", "syslinux_populate", "efi_populate", "PREFERRED_VERSION_xen", "GRUB_BUILDIN",
        "XEN_REF_DOM0LESS_DTB", "XEN_REF_DOM0LESS_QEMU", "XEN_REF_DOM0LESS_DTC"]
FLAGS = ["do_image_wic[depends]", "do_image_wic[prefuncs]", "do_bootimg[prefuncs]", "do_bootimg[depends]",
         "do_write_qemuboot_conf[depends]", "do_write_qemuboot_conf[prefuncs]", "do_xen_ref_dom0less_uboot[task]",
         "do_xen_ref_dom0less_uboot[deps]", "do_xen_ref_dom0less_uboot[depends]"]
EXPAND = {loader + ("-live" if live else ""): f"${{@xen_ref_boot_config(d, '{loader}', {live})}}"
          for loader in xenboot.multiboot.LOADERS for live in (False, True)}


def environment(release: str) -> oeglue.OeEnvironment:
    base = Path(os.environ.get("XEN_REF_OE_ENV_BASE", "/opt/oe-env"))
    try:
        return oeglue.oe_environment(release, root=base / release)
    except oeglue.GlueError as err:
        pytest.fail(f"{err}; or deselect these tests with -m 'not oecore'", pytrace=False)


def build_dir(release: str, machine: str, conf: str) -> Path:
    """A build dir per checkout, release, machine and extra configuration (kept: BitBake's caches)."""
    key = hashlib.sha256(f"{LAYER}\n{conf}".encode()).hexdigest()[:12]
    return Path("/tmp") / f"xen-ref-tinfoil-{os.getuid()}" / f"{release}-{machine}-{key}"


def run_probe(env: oeglue.OeEnvironment, build: Path, request: dict[str, Any]) -> dict[str, Any]:
    command = (f". {shlex.quote(str(env.root / 'env.sh'))} {shlex.quote(str(build))} >/dev/null && "
               f"python3 {shlex.quote(str(Path(__file__).with_name('tinfoil_probe.py')))}")
    argv = ["bash", "-c", command]
    if os.geteuid() == 0:
        user = pwd.getpwnam(BUILD_USER)
        for path in (build.parent, build):
            os.chown(path, user.pw_uid, user.pw_gid)
        subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(build)], check=True)
        argv = ["runuser", "-u", BUILD_USER, "--"] + argv
    proc = subprocess.run(argv, input=json.dumps(request), capture_output=True, text=True, timeout=900,
                          check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        pytest.fail(f"tinfoil in {build} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}", pytrace=False)
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def other_recipes(env: oeglue.OeEnvironment) -> dict[str, str]:
    """meta-virtualization's versioned xen recipes (``xen-<version>``) and oe-core's grub-efi."""
    found = sorted((env.meta_virtualization / "recipes-extended" / "xen").glob("xen_[0-9]*.bb"))
    recipes = {"xen-" + p.stem.split("_", 1)[1]: str(p) for p in found}
    grub = sorted((env.oecore / "meta" / "recipes-bsp" / "grub").glob("grub-efi_*.bb"))
    assert len(grub) == 1, grub
    return {**recipes, "grub-efi": str(grub[0]), "grub-efi-plain": str(grub[0])}


@functools.cache
def parsed(release: str, machine: str, conf: str = "") -> str:
    """The probe's JSON for the image and the xen recipes, with ``conf`` added to local.conf."""
    env = environment(release)
    build = build_dir(release, machine, conf)
    build.parent.mkdir(mode=0o755, exist_ok=True)
    oeglue.write_build_conf(build, env.layers(LAYER), machine, env, conf)
    request = {"recipes": {"image": str(IMAGE), "guest": str(GUEST), **other_recipes(env)}, "vars": VARS,
               "flags": FLAGS,
               "appends": {"grub-efi": [str(p) for p in (LAYER / "recipes-bsp" / "grub").glob("grub-efi_*.bbappend")]},
               "expand": {"image": EXPAND} if machine == "qemux86-64" else {}}
    return json.dumps(run_probe(env, build, request))


def image(release: str, machine: str, conf: str = "") -> dict[str, Any]:
    recipe: dict[str, Any] = json.loads(parsed(release, machine, conf))["recipes"]["image"]
    assert recipe["vars"]["__SKIPPED"] is None, recipe["vars"]["__SKIPPED"]
    return recipe


def words(value: str | None) -> list[str]:
    return (value or "").split()


def boot_values(v: dict[str, str | None]) -> dict[str, str]:
    keys = ("QB_XEN_CMDLINE", "QB_XEN_DOM0_BOOTARGS", "KERNEL_IMAGETYPE")
    return {**{k: v[k] or "" for k in keys}, "QB_XEN_DOM0_INITRD": "", "XEN_REF_BOOT_TIMEOUT": "1",
            "XEN_REF_BOOT_SERIAL": "0 115200", "ROOT_LIVE": "root=/dev/ram0", "INITRD": ""}


# ----------------------------------------------------------------- every machine, both releases

@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("machine", MACHINES)
def test_xen_command_lines_are_xenboots_defaults_for_the_architecture(release: str, machine: str) -> None:
    v = image(release, machine)["vars"]
    defaults = xenboot.arch_defaults(v["TARGET_ARCH"])
    contract = xenboot.XenBoot.from_variables({k: v[k] for k in ("QB_XEN_CONSOLE", "QB_XEN_DOM0_BOOTARGS",
                                                                 "QB_XEN_DOM0_KERNEL") if v[k] is not None})
    assert contract == defaults
    assert words(v["QB_XEN_CMDLINE"]) == words(defaults.xen_cmdline())
    assert v["SERIAL_CONSOLES"] == "115200;hvc0"
    assert v["QB_TCPSERIAL_OPT"] == "-serial tcp:127.0.0.1:@PORT@,nodelay=on"
    assert "xen:do_deploy" in words(image(release, machine)["flags"]["do_write_qemuboot_conf[depends]"])


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("machine, system, qemu_machine, kernel", [
    ("qemuarm64", "qemu-system-aarch64", "-machine virt,gic-version=3,virtualization=on", "Image"),
    ("qemuarm", "qemu-system-arm", "-machine virt,highmem=off,gic-version=2,virtualization=on", "zImage"),
])
def test_arm_machines_boot_xen_as_kernel_and_dom0_through_guest_loader(
        release: str, machine: str, system: str, qemu_machine: str, kernel: str) -> None:
    v = image(release, machine)["vars"]
    assert (v["QB_SYSTEM_NAME"], v["QB_MACHINE"], v["KERNEL_IMAGETYPE"]) == (system, qemu_machine, kernel)
    assert v["QB_DEFAULT_KERNEL"] == f"xen-{machine}"
    assert v["QB_DEFAULT_FSTYPE"] == "ext4" and "ext4" in words(v["IMAGE_FSTYPES"])
    # runqemu's -append is Xen's command line; QB_OPT_APPEND is exactly the guest-loader devices
    assert words(v["QB_KERNEL_CMDLINE_APPEND"])[:-1] == words(v["QB_XEN_CMDLINE"])
    boot = xenboot.XenBoot(dom0_kernel=kernel)
    assert shlex.split(v["QB_OPT_APPEND"] or "") == shlex.split(boot.opt_append())
    assert "virtio-blk-device" in (v["QB_ROOTFS_OPT"] or "")
    assert not {"kernel-module-tun", "qemu", "xen-tools-hvmloader", "seabios"} & set(words(v["IMAGE_INSTALL"]))
    assert v["WKS_FILE"] == f"xen-image-minimal.{machine}.wks"      # oe-core's default: no Xen wic on Arm


@pytest.mark.parametrize("release", RELEASES)
def test_qemux86_64_boots_its_wic_disk_whose_syslinux_starts_xen(release: str) -> None:
    recipe = image(release, "qemux86-64")
    v = recipe["vars"]
    assert (v["QB_SYSTEM_NAME"], v["QB_DEFAULT_KERNEL"], v["QB_DEFAULT_FSTYPE"], v["QB_FSINFO"]) == \
        ("qemu-system-x86_64", "none", "wic", "wic:kernel-in-fs")
    assert "wic" in words(v["IMAGE_FSTYPES"])
    assert v["QB_CPU_KVM"] == "-cpu host -machine q35,i8042=off"
    assert Path(v["WKS_FULL_PATH"]).name == "xen-ref-x86-bios.wks"         # the expanded template
    assert words(v["_WKS_TEMPLATE"])[:3] == ["#", "short-description:", "Legacy"]
    assert f'--configfile="{v["XEN_REF_SYSLINUX_CFG"]}"' in v["_WKS_TEMPLATE"]
    assert "--source bootimg-biosxen" in v["_WKS_TEMPLATE"]
    assert recipe["expand"]["syslinux"] == xenboot.image_boot_config(boot_values(v), "syslinux")
    assert "KERNEL mboot.c32" in recipe["expand"]["syslinux"]
    assert "xen_ref_write_wic_boot_config" in words(recipe["flags"]["do_image_wic[prefuncs]"])
    assert "xen:do_deploy" in words(recipe["flags"]["do_image_wic[depends]"])


@pytest.mark.parametrize("release", RELEASES)
def test_qemux86_64_installs_the_device_model_and_x86_modules(release: str) -> None:
    v = image(release, "qemux86-64")["vars"]
    installed = words(v["IMAGE_INSTALL"])
    assert {"qemu", "xen-tools-hvmloader", "seabios", "kernel-module-tun", "kernel-module-xen-blkback",
            "kernel-module-xen-netback"} <= set(installed)
    # qemux86-64 has the "pci" machine feature, not "acpi"
    assert "pci" in words(v["MACHINE_FEATURES"]) and "acpi" not in words(v["MACHINE_FEATURES"])
    assert "kernel-module-xen-pciback" in installed
    assert "kernel-module-xen-acpi-processor" not in installed
    with_acpi = image(release, "qemux86-64", 'MACHINE_FEATURES:append = " acpi"\n')["vars"]
    assert "kernel-module-xen-acpi-processor" in words(with_acpi["IMAGE_INSTALL"])


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("machine", MACHINES)
def test_the_guest_image_has_a_bootable_disk_for_hvm_on_x86_only(release: str, machine: str) -> None:
    guest = json.loads(parsed(release, machine))["recipes"]["guest"]["vars"]
    assert guest["__SKIPPED"] is None
    fstypes = words(guest["IMAGE_FSTYPES"])
    assert {"ext4", "ext4.qcow2", "tar.zst"} <= set(fstypes)
    assert ("wic" in fstypes) == (machine == "qemux86-64")
    if machine == "qemux86-64":      # the machine's BIOS disk: syslinux boots the guest's kernel
        assert guest["WKS_FILE"] == "qemux86-directdisk.wks"


# ----------------------------------------------------------------- x86-64 variants

@pytest.mark.parametrize("release", RELEASES)
def test_efi_mode_writes_grub_multiboot2_and_adds_xen_and_ovmf(release: str) -> None:
    recipe = image(release, "qemux86-64", 'XEN_BOOT_MODE = "efi"\nQB_XEN_DOM0_INITRD = "initrd.gz"\n')
    v = recipe["vars"]
    assert Path(v["WKS_FULL_PATH"]).name == "xen-ref-x86-efi.wks"
    assert f'--configfile="{v["XEN_REF_GRUB_CFG"]}"' in v["_WKS_TEMPLATE"]
    assert "--ptable gpt" in v["_WKS_TEMPLATE"]
    assert words(v["IMAGE_EFI_BOOT_FILES"])[-2:] == ["xen-qemux86-64.gz;xen.gz", "initrd.gz;initrd.gz"]
    assert {"xen:do_deploy", "ovmf:do_deploy"} <= set(words(recipe["flags"]["do_image_wic[depends]"]))
    values = dict(boot_values(v), QB_XEN_DOM0_INITRD="initrd.gz")
    assert recipe["expand"]["grub"] == xenboot.image_boot_config(values, "grub")
    assert "\tmodule2 /initrd.gz\n" in recipe["expand"]["grub"]


@pytest.mark.parametrize("release", RELEASES)
def test_hddimg_installs_xens_syslinux_config_mboot_and_xen(release: str) -> None:
    recipe = image(release, "qemux86-64", 'IMAGE_FSTYPES:append:pn-xen-image-minimal = " hddimg"\n')
    v, flags = recipe["vars"], recipe["flags"]
    assert "xen_ref_write_live_boot_configs" in words(flags["do_bootimg[prefuncs]"])
    assert "xen:do_deploy" in words(flags["do_bootimg[depends]"])
    # image-live's populate step (oe-core's) ends with the class's lines
    populate = v["syslinux_populate"] or ""
    assert populate.index("install -m 0644 ${SYSLINUX_CFG}") < populate.index("live-syslinux.cfg")
    assert "/syslinux/mboot.c32 ${DEST}${BOOTDIR}/mboot.c32" in populate
    assert "/xen-qemux86-64.gz ${DEST}/xen.gz" in populate
    live = recipe["expand"]["syslinux-live"]
    assert "LABEL=boot" in live and "--- /initrd" in live and "root=/dev/sda2" not in live


@pytest.mark.parametrize("release", RELEASES)
def test_a_broken_boot_setting_skips_the_image_with_the_reason(release: str) -> None:
    bad = json.loads(parsed(release, "qemux86-64", 'QB_XEN_DOM0_BOOTARGS = "console=hvc0 --- root=/dev/sda2"\n'))
    reason = bad["recipes"]["image"]["vars"]["__SKIPPED"] or ""
    assert "QB_XEN_DOM0_BOOTARGS" in reason and "'---'" in reason
    mode = json.loads(parsed(release, "qemux86-64", 'XEN_BOOT_MODE = "hyperv-gen1"\n'))
    assert 'XEN_BOOT_MODE = "hyperv-gen1"' in (mode["recipes"]["image"]["vars"]["__SKIPPED"] or "")


# ----------------------------------------------------------------- where Xen builds

@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("machine", [*MACHINES, "qemux86"])
def test_the_image_is_offered_exactly_where_xen_builds(release: str, machine: str) -> None:
    """meta-virtualization's preferred xen (its COMPATIBLE_HOST) parses for our three machines,
    qemuarm included, and is skipped on qemux86 (32-bit x86), where the image is skipped too,
    with its own reason."""
    recipes = json.loads(parsed(release, machine))["recipes"]
    image_vars = recipes["image"]["vars"]
    version = (image_vars["PREFERRED_VERSION_xen"] or "").split("+")[0].rstrip("%")
    xen = [name for name in recipes if name.startswith(f"xen-{version}")]
    assert len(xen) == 1, (version, sorted(recipes))
    xen_skipped, image_skipped = recipes[xen[0]]["vars"]["__SKIPPED"], image_vars["__SKIPPED"]
    if machine == "qemux86":
        assert xen_skipped and "incompatible" in xen_skipped
        assert image_skipped and "i686" in image_skipped and "XEN_REF_XEN_ARCHS" in image_skipped
    else:
        assert (xen_skipped, image_skipped) == (None, None)


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("machine, conf, added", [
    ("qemux86-64", "", ["multiboot2", "gzio"]),
    ("qemux86-64", 'DISTRO_FEATURES:remove = "xen"\n', []),
    ("qemuarm64", "", []),
])
def test_grub_efi_gets_multiboot2_and_gzio_for_xen_on_x86_only(release: str, machine: str, conf: str,
                                                                added: list[str]) -> None:
    """The layer's grub-efi bbappend adds what the EFI disk's grub.cfg uses, and nothing elsewhere."""
    recipes = json.loads(parsed(release, machine, conf))["recipes"]
    with_append = words(recipes["grub-efi"]["vars"]["GRUB_BUILDIN"])
    without = words(recipes["grub-efi-plain"]["vars"]["GRUB_BUILDIN"])
    assert with_append == without + added


DOM0LESS_CONF = """\
BUNDLED_XEN_GUESTS = "xen-guest-image-minimal:dom0less"
XEN_GUEST_RAMDISK[xen-guest-image-minimal] = "xen-guest-image-minimal-qemuarm64.rootfs.cpio.gz"
XEN_GUEST_MEMORY[xen-guest-image-minimal] = "128"
"""


@pytest.mark.parametrize("release", RELEASES)
def test_a_dom0less_guest_hooks_the_boot_files_into_the_real_image(release: str) -> None:
    """With oe-core's image.bbclass (qemuboot from IMAGE_CLASSES) the prefunc, its native tools and
    the U-Boot task are wired; without dom0less guests none of it (the other tests' image)."""
    recipe = image(release, "qemuarm64", DOM0LESS_CONF)
    flags, values = recipe["flags"], recipe["vars"]
    assert "xen_ref_dom0less_qemu_boot" in words(flags["do_write_qemuboot_conf[prefuncs]"])
    assert {"qemu-system-native:do_populate_sysroot", "dtc-native:do_populate_sysroot"} <= \
        set(words(flags["do_write_qemuboot_conf[depends]"]))
    assert flags["do_xen_ref_dom0less_uboot[task]"] and "do_rootfs" in flags["do_xen_ref_dom0less_uboot[deps]"]
    assert "virtual/kernel:do_deploy" in words(flags["do_xen_ref_dom0less_uboot[depends]"])
    assert values["XEN_REF_DOM0LESS_DTB"] == "xen-image-minimal-qemuarm64.dom0less.dtb"
    assert values["XEN_REF_DOM0LESS_QEMU"].endswith("/recipe-sysroot-native/usr/bin/qemu-system-aarch64")
    plain = image(release, "qemuarm64")["flags"]
    assert "xen_ref_dom0less_qemu_boot" not in words(plain["do_write_qemuboot_conf[prefuncs]"])
    assert not any(d.startswith("dtc-native") for d in words(plain["do_write_qemuboot_conf[depends]"]))
    assert not plain["do_xen_ref_dom0less_uboot[task]"]
