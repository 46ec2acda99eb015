"""xenboot.dom0lessboot: the dom0less boot files of an image made from its deploy folder (real QEMU
dumps the machine's tree, real dtc compiles it)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from xenboot import ARM_VIRT_RAM_BASE, BootConfigError, RamRegion, XenBoot, XenHostBoot
from xenboot.dom0less import Dom0lessDomain
from xenboot.dom0lessboot import (
    QemuTools,
    deploy_file_sizes,
    deployed_layout,
    machine_arguments,
    qemu_dom0less_boot,
    uboot_board,
    without_guest_loaders,
    write_uboot_script,
)
from xenboot.ubootscript import UbootBoard

MiB = 1024 * 1024
RAM = RamRegion(ARM_VIRT_RAM_BASE, 1024 * MiB)
GUEST = Dom0lessDomain("tiny", "Image", "tiny.cpio.gz", 96, 2, "console=ttyAMA0 rdinit=/bin/sh")
needs_tools = pytest.mark.skipif(shutil.which("dtc") is None or shutil.which("qemu-system-aarch64") is None,
                                 reason="needs dtc and qemu-system-aarch64 (scripts/setup-host installs both)")


@pytest.fixture
def deploy(tmp_path: Path) -> Path:
    folder = tmp_path / "deploy"
    folder.mkdir()
    (folder / "Image-6.6.bin").write_bytes(b"\0" * (5 * MiB + 3))
    (folder / "Image").symlink_to("Image-6.6.bin")  # as oe-core deploys KERNEL_IMAGETYPE
    (folder / "tiny.cpio.gz").write_bytes(b"\x1f\x8b" + b"r" * 4000)
    return folder


def _machine(boot: XenHostBoot, opt_append: str) -> dict[str, str]:
    return {**boot.variables(), "QB_OPT_APPEND": opt_append}


@needs_tools
def test_writes_the_tree_with_the_domain_and_the_values_that_boot_it(deploy: Path, tmp_path: Path) -> None:
    boot = XenHostBoot(memory_mb=1024, smp=2, xen=XenBoot(dom0_mem="384M"))
    opt_append = boot.xen.opt_append() + " -device virtio-gpu-device -d 'guest_errors'"
    dtb = tmp_path / "out" / "host.dom0less.dtb"
    made = qemu_dom0less_boot(boot.xen, (GUEST,), deploy=deploy, machine=_machine(boot, opt_append), ram=RAM,
                              dom0_mib=384, work=tmp_path / "work", dtb=dtb)
    source = subprocess.run(["dtc", "-q", "-I", "dtb", "-O", "dts", str(dtb)], capture_output=True, text=True,
                            check=True).stdout
    kernel, ramdisk = made.layout.domains[0][1:]
    assert (kernel.address, kernel.size) == (0x49000000 + 6 * MiB, 5 * MiB + 3)  # after dom0's Image, aligned
    assert (ramdisk.address, ramdisk.size) == (0x49000000 + 12 * MiB, 4002)
    node = source[source.index("tiny {"):]
    assert 'compatible = "xen,domain";' in node and "memory = <0x00 0x18000>;" in node
    assert "cpus = <0x02>;" in node and 'xen,enhanced = "enabled";' in node
    assert f"reg = <0x00 {kernel.address:#x} 0x00 0x500003>;" in node
    assert f"reg = <0x00 {ramdisk.address:#x} 0x00 0xfa2>;" in node
    assert 'bootargs = "console=ttyAMA0 rdinit=/bin/sh";' in node
    assert "cpu@1 {" in source and "cpu@2 {" not in source, "the tree is the machine's with -smp 2"
    assert not re.search(r"(rng|kaslr)-seed", source), "the dump's random seeds are left out"
    assert not list(dtb.parent.glob("*.partial")) and not list(dtb.parent.glob("*.dts"))
    values = made.variables
    assert values["QB_DTB"] == "host.dom0less.dtb"
    assert values["QB_XEN_DOM0LESS"] == "tiny" and values["QB_XEN_DOM0LESS_BOOTARGS_1"] == GUEST.bootargs
    words = shlex.split(values["QB_OPT_APPEND"])
    assert words[:4] == ["-device", "virtio-gpu-device", "-d", "guest_errors"], "other options are kept"
    assert not any(w.startswith("guest-loader") for w in words)
    assert words[4:] == ["-device", "loader,file=@DEPLOY_DIR_IMAGE@/Image,addr=0x49000000,force-raw=on",
                         "-device", f"loader,file=@DEPLOY_DIR_IMAGE@/Image,addr={kernel.address:#x},force-raw=on",
                         "-device", (f"loader,file=@DEPLOY_DIR_IMAGE@/tiny.cpio.gz,addr={ramdisk.address:#x},"
                                     "force-raw=on")]


def test_a_missing_ramdisk_names_the_file_what_it_is_and_the_fix(deploy: Path, tmp_path: Path) -> None:
    (deploy / "tiny.cpio.gz").unlink()
    with pytest.raises(BootConfigError) as caught:
        qemu_dom0less_boot(XenBoot(), (GUEST,), deploy=deploy, machine={}, ram=RAM, dom0_mib=384,
                           work=tmp_path / "work", dtb=tmp_path / "x.dtb", tools=QemuTools(qemu="false"))
    text = str(caught.value)
    assert text.startswith(f"{deploy / 'tiny.cpio.gz'}: dom0less guest 'tiny' ramdisk is missing")
    assert 'IMAGE_FSTYPES += "cpio.gz"' in text and "XEN_GUEST_RAMDISK" in text
    assert not (tmp_path / "x.dtb").exists()


def test_file_sizes_follow_links_and_refuse_empty_and_dangling_files(deploy: Path) -> None:
    assert deploy_file_sizes(deploy, [("Image", "k"), ("tiny.cpio.gz", "r")]) == {"Image": 5 * MiB + 3,
                                                                                   "tiny.cpio.gz": 4002}
    (deploy / "empty.cpio.gz").write_bytes(b"")
    with pytest.raises(BootConfigError, match=r"empty.cpio.gz: the ramdisk is empty"):
        deploy_file_sizes(deploy, [("empty.cpio.gz", "the ramdisk")])
    (deploy / "dangling").symlink_to("gone")
    with pytest.raises(BootConfigError, match=r"dangling: dom0 kernel is missing"):
        deploy_file_sizes(deploy, [("dangling", "dom0 kernel")])


def test_memory_that_cannot_fit_is_refused_before_any_file_is_read(tmp_path: Path) -> None:
    with pytest.raises(BootConfigError, match="need 488 MiB, the machine has 400 MiB"):
        qemu_dom0less_boot(XenBoot(), (GUEST,), deploy=tmp_path / "none", machine={},
                           ram=RamRegion(ARM_VIRT_RAM_BASE, 400 * MiB), dom0_mib=384, work=tmp_path / "w",
                           dtb=tmp_path / "x.dtb")


@needs_tools
def test_an_unwritable_destination_is_a_boot_config_error(deploy: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    boot = XenHostBoot(memory_mb=1024, smp=1)
    with pytest.raises(BootConfigError, match=r"file/t.dtb could not be written"):
        qemu_dom0less_boot(boot.xen, (GUEST,), deploy=deploy, machine=boot.variables(), ram=RAM, dom0_mib=384,
                           work=tmp_path / "work", dtb=tmp_path / "file" / "t.dtb")


def test_guest_loaders_are_dropped_and_other_options_kept() -> None:
    assert without_guest_loaders(XenBoot(dom0_initrd="i.cpio").opt_append()) == []
    assert without_guest_loaders('-device "guest-loader,kernel=x,bootargs=a b" -device qemu-xhci -S') == [
        "-device", "qemu-xhci", "-S"]
    assert without_guest_loaders("") == [] and without_guest_loaders("-device") == ["-device"]


def test_machine_arguments_are_the_four_machine_settings_in_order() -> None:
    values = {"QB_MEM": "-m 1024", "QB_MACHINE": "-machine virt,gic-version=3", "QB_CPU": "-cpu cortex-a57",
              "QB_SMP": "-smp 2", "QB_OPT_APPEND": "-S"}
    assert machine_arguments(values) == ["-machine", "virt,gic-version=3", "-cpu", "cortex-a57", "-smp", "2",
                                         "-m", "1024"]
    assert machine_arguments({"QB_MACHINE": "-machine virt"}) == ["-machine", "virt"]


def test_uboot_board_reads_the_settings_and_keeps_defaults_for_unset_ones() -> None:
    assert uboot_board({}) == UbootBoard()
    board = uboot_board({"XEN_REF_UBOOT_LOAD_SOURCE": "usb 0:2", "XEN_REF_UBOOT_XEN_ADDR": "0x60000000",
                         "XEN_REF_UBOOT_FDT_FILE": "rk3588-rock-5b.dtb", "XEN_REF_UBOOT_FDT_ADDR": " ",
                         "XEN_REF_UBOOT_XEN_CMDLINE": "dom0_mem=1G  console=dtuart"})
    assert board == UbootBoard(load_source="usb 0:2", xen_addr=0x60000000, fdt_file="rk3588-rock-5b.dtb",
                               xen_cmdline="dom0_mem=1G console=dtuart")
    with pytest.raises(BootConfigError, match=r"key 'XEN_REF_UBOOT_FDT_ADDR': '4G' is not an address"):
        uboot_board({"XEN_REF_UBOOT_FDT_ADDR": "4G"})


def test_the_uboot_script_loads_every_deployed_module_at_its_layout_address(deploy: Path, tmp_path: Path) -> None:
    layout = deployed_layout(XenBoot(), (GUEST,), deploy, RAM, 384)
    output = tmp_path / "out" / "host.dom0less-boot.cmd"
    board = UbootBoard(xen_file="xen-qemuarm64", xen_cmdline="console=dtuart dom0_mem=384M")
    text = write_uboot_script(layout, board, RAM, output, tmp_path / "work")
    assert output.read_text() == text
    kernel, ramdisk = layout.domains[0][1:]
    assert "load mmc 0:1 0x40200000 xen-qemuarm64 || exit" in text
    assert f"load mmc 0:1 {kernel.address:#x} Image || exit" in text
    assert f"load mmc 0:1 {ramdisk.address:#x} tiny.cpio.gz || exit" in text
    assert "if test 0x${filesize} -gt 0xfa2; then" in text  # the ramdisk's size when generated
    assert 'fdt set /chosen/tiny compatible "xen,domain"' in text
    assert 'fdt set /chosen xen,xen-bootargs "console=dtuart dom0_mem=384M"' in text
    assert text.rstrip().endswith("booti 0x40200000 - 0x44000000")
    clash = UbootBoard(xen_addr=0x49000000)
    with pytest.raises(BootConfigError, match="overlaps"):
        write_uboot_script(layout, clash, RAM, tmp_path / "clash.cmd", tmp_path / "work")
    assert not (tmp_path / "clash.cmd").exists()
