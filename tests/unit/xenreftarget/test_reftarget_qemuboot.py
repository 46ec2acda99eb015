"""qemuboot.conf: oe-core's form, runqemu's reading, Xen's command line, guest-loader options."""

import configparser
import shlex

import pytest
from xenreftarget.qemuboot import (
    BootSettings,
    QemubootError,
    check_load_addresses,
    qemuboot_values,
    read_qemuboot_conf,
    render_qemuboot_conf,
    runqemu_like_command,
)


@pytest.fixture
def conf(tmp_path):
    path = tmp_path / "deploy" / "xen-image-minimal-qemuarm64.qemuboot.conf"
    path.parent.mkdir()
    path.write_text(render_qemuboot_conf(qemuboot_values(BootSettings())))
    return path


def test_written_like_oe_core_one_section_lower_case_sorted_keys(conf):
    lines = conf.read_text().splitlines()
    assert lines[0] == "[config_bsp]"
    keys = [line.split(" = ")[0] for line in lines[1:] if " = " in line]
    assert keys == sorted(keys)
    assert all(key == key.lower() for key in keys)
    assert "deploy_dir_image = ." in lines


def test_runqemu_reading_gives_the_variables_back(conf):
    values = read_qemuboot_conf(conf)
    assert values["DEPLOY_DIR_IMAGE"] == str(conf.parent)
    assert values["QB_DEFAULT_KERNEL"] == "xen-qemuarm64"
    assert values["QB_DEFAULT_FSTYPE"] == "ext4"
    assert values["QB_SYSTEM_NAME"] == "qemu-system-aarch64"
    assert values["QB_MACHINE"] == "-machine virt,virtualization=on,gic-version=3"
    assert values["QB_CPU"] == "-cpu cortex-a57"
    assert values["IMAGE_LINK_NAME"] == "xen-image-minimal-qemuarm64.rootfs"
    assert values["MACHINE"] == "qemuarm64"
    assert values["KERNEL_IMAGETYPE"] == "Image"
    assert "@ROOTFS@" in values["QB_ROOTFS_OPT"] and "virtio-blk-device" in values["QB_ROOTFS_OPT"]
    assert values["QB_NETWORK_DEVICE"].startswith("-device virtio-net-device,netdev=net0")
    # runqemu reads with interpolation on: every value must survive it
    parser = configparser.ConfigParser()
    parser.read(conf)
    assert {k: v for k, v in parser.items("config_bsp")}


def test_xen_command_line_ends_with_dtuart_console():
    line = BootSettings().xen_command_line()
    assert line.split()[-1] == "console=dtuart"
    assert "dom0_mem=384M,max:384M" in line and "bootscrub=0" in line


def test_guest_loader_bootargs_stay_one_option_after_shell_splitting(conf):
    values = read_qemuboot_conf(conf)
    words = shlex.split(values["QB_OPT_APPEND"].replace("@DEPLOY_DIR_IMAGE@", "/d"))
    assert words == [
        "-device", "guest-loader,addr=0x49000000,kernel=/d/Image,bootargs=console=hvc0 root=/dev/vda rw quiet",
        "-device", "guest-loader,addr=0x4c000000,initrd=/d/xen-ref-initramfs-qemuarm64.cpio.gz"]


def test_runqemu_like_command_has_xen_as_kernel_and_its_append_last_console_dtuart(conf, tmp_path):
    argv = runqemu_like_command(conf, tmp_path / "root.ext4")
    assert argv[argv.index("-kernel") + 1] == str(conf.parent / "xen-qemuarm64")
    append = argv[argv.index("-append") + 1]
    assert [w for w in append.split() if w.startswith("console=")][-1] == "console=dtuart"
    assert f"file={tmp_path / 'root.ext4'}" in " ".join(argv)


def test_values_that_runqemu_cannot_read_back_are_refused():
    with pytest.raises(QemubootError, match="'%'"):
        render_qemuboot_conf({"QB_MEM": "-m 50%"})
    with pytest.raises(QemubootError, match="unbalanced quotes"):
        render_qemuboot_conf({"QB_OPT_APPEND": '-device x,bootargs="a b'})
    with pytest.raises(QemubootError, match="QEMU's -device"):
        BootSettings(dom0_bootargs="console=hvc0,115200").guest_loader_options()


def test_load_addresses_are_checked_against_kernel_and_ram_size():
    settings = BootSettings()
    check_load_addresses(settings, 32 << 20, 2 << 20)
    with pytest.raises(QemubootError, match="overlaps the initrd"):
        check_load_addresses(settings, 64 << 20, 2 << 20)
    with pytest.raises(QemubootError, match="past the end of RAM"):
        check_load_addresses(BootSettings(memory_mb=128), 32 << 20, 2 << 20)
