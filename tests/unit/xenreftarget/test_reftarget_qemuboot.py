"""The reference target's qemuboot.conf: written by xenboot in oe-core's form, read back by runqemu's
rules and by the harness, with the QB_XEN_* contract and checked load addresses."""

from __future__ import annotations

import configparser
import shlex
from dataclasses import replace
from pathlib import Path

import pytest
import xenboot
from xenboot import BootConfigError, XenBoot, read_qemuboot, write_qemuboot
from xenqemu.cmdline import RunPaths, build_argv
from xenqemu.target import load_target
from xenreftarget.build import (
    HOST_ROOTFS,
    INITRD,
    KERNEL,
    QEMUBOOT_CONF,
    REFERENCE_BOOT,
    XEN_BINARY,
)

MiB = 1 << 20


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    for name, size in ((XEN_BINARY, MiB), (KERNEL, 30 * MiB), (INITRD, 2 * MiB), (HOST_ROOTFS, MiB)):
        with open(deploy / name, "wb") as f:
            f.truncate(size)
    return write_qemuboot(deploy / QEMUBOOT_CONF, REFERENCE_BOOT.variables())


def test_written_like_oe_core_one_section_lower_case_sorted_keys(conf: Path) -> None:
    lines = conf.read_text().splitlines()
    assert lines[0] == "[config_bsp]"
    keys = [line.split(" = ")[0] for line in lines[1:] if " = " in line]
    assert keys == sorted(keys, key=str.upper)
    assert all(key == key.lower() for key in keys)
    assert "deploy_dir_image = ." in lines


def test_runqemu_reading_gives_the_variables_back(conf: Path) -> None:
    values = read_qemuboot(conf).values
    assert values["DEPLOY_DIR_IMAGE"] == str(conf.parent.resolve())
    assert values["QB_DEFAULT_KERNEL"] == "xen-qemuarm64"
    assert values["QB_DEFAULT_FSTYPE"] == "ext4"
    assert values["QB_SYSTEM_NAME"] == "qemu-system-aarch64"
    assert values["QB_MACHINE"] == "-machine virt,gic-version=3,virtualization=on"
    assert values["QB_CPU"] == "-cpu cortex-a57"
    assert values["QB_MEM"] == "-m 1024" and values["QB_SMP"] == "-smp 2"
    assert values["IMAGE_LINK_NAME"] == "xen-image-minimal-qemuarm64.rootfs"
    assert values["MACHINE"] == "qemuarm64"
    assert values["KERNEL_IMAGETYPE"] == "Image"
    assert "@ROOTFS@" in values["QB_ROOTFS_OPT"] and "virtio-blk-device" in values["QB_ROOTFS_OPT"]
    assert values["QB_NETWORK_DEVICE"].startswith("-device virtio-net-device,netdev=net0")
    # runqemu reads with interpolation on: every value must survive it
    parser = configparser.ConfigParser()
    parser.read(conf)
    assert {k.upper(): v for k, v in parser.items("config_bsp")} == read_qemuboot(conf).written


def test_the_contract_is_in_the_file(conf: Path) -> None:
    values = read_qemuboot(conf).values
    assert XenBoot.from_variables(values) == REFERENCE_BOOT.xen
    assert values["QB_XEN_DOM0_INITRD"] == "xen-ref-initramfs-qemuarm64.cpio.gz"
    assert values["QB_XEN_DOM0_ADDR"] == f"{xenboot.DOM0_KERNEL_ADDR:#x}"


def test_xen_command_line_ends_with_dtuart_console() -> None:
    line = REFERENCE_BOOT.xen.xen_cmdline()
    assert line.split()[-1] == "console=dtuart"
    assert "dom0_mem=384M,max:384M" in line and "bootscrub=0" in line and "dom0_max_vcpus=2" in line


def test_guest_loader_bootargs_stay_one_option_after_shell_splitting(conf: Path) -> None:
    values = read_qemuboot(conf).values
    words = shlex.split(values["QB_OPT_APPEND"].replace("@DEPLOY_DIR_IMAGE@", "/d"))
    assert words == [
        "-device", "guest-loader,addr=0x49000000,kernel=/d/Image,bootargs=console=hvc0 root=/dev/vda rw quiet",
        "-device", "guest-loader,addr=0x4c000000,initrd=/d/xen-ref-initramfs-qemuarm64.cpio.gz"]


def test_the_harness_boots_xen_as_kernel_with_console_dtuart_last(conf: Path) -> None:
    target = load_target(conf)
    argv = build_argv(target, RunPaths.in_dir(Path("/run/x")))
    assert argv[argv.index("-kernel") + 1] == str(conf.parent.resolve() / "xen-qemuarm64")
    append = argv[argv.index("-append") + 1]
    assert [w for w in append.split() if w.startswith("console=")][-1] == "console=dtuart"
    assert target.xen_contract == REFERENCE_BOOT.xen
    assert f"file={conf.parent.resolve() / HOST_ROOTFS}" in " ".join(argv)


def test_load_addresses_are_checked_against_kernel_and_ram_size() -> None:
    REFERENCE_BOOT.check_layout(32 * MiB, 2 * MiB)
    with pytest.raises(BootConfigError, match="overlaps dom0 initrd"):
        REFERENCE_BOOT.check_layout(64 * MiB, 2 * MiB)
    with pytest.raises(BootConfigError, match="does not fit in RAM"):
        replace(REFERENCE_BOOT, memory_mb=128).check_layout(32 * MiB, 2 * MiB)


def test_xen_4_20_logs_at_info_so_the_banner_and_dom0_hand_over_show():
    from xenreftarget.build import reference_boot
    from xenreftarget.packages import Distro

    assert reference_boot(Distro()) == REFERENCE_BOOT
    trixie = reference_boot(Distro("trixie", "arm64"))
    assert "loglvl=info " in trixie.xen.xen_cmdline() and "guest_loglvl=warning" in trixie.xen.xen_cmdline()
    assert "loglvl=warning " in REFERENCE_BOOT.xen.xen_cmdline()
    assert replace(trixie, xen=REFERENCE_BOOT.xen) == REFERENCE_BOOT
