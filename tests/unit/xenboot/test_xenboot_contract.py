"""xenboot.contract and loaders: the QB_XEN_* variables, guest-loader devices, layout checks."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import xenboot
from xenboot import (
    BootConfigError,
    GuestLoader,
    Module,
    RamRegion,
    XenBoot,
    check_layout,
    guest_loaders_in,
)
from xenboot.qemuopts import escape, files_named, split_option

MiB = 1 << 20


def test_xen_cmdline_has_dom0_memory_and_console_dtuart_last() -> None:
    assert XenBoot().xen_cmdline() == "dom0_mem=512M,max:512M bootscrub=0 console=dtuart"
    line = XenBoot(dom0_mem="1G", cmdline_extra="loglvl=all  sched=credit2").xen_cmdline()
    assert line == "dom0_mem=1G,max:1G bootscrub=0 loglvl=all sched=credit2 console=dtuart"
    # extra options go before Xen's console, so console=dtuart stays the last console=
    assert XenBoot(cmdline_extra="console=com1").xen_cmdline().split()[-2:] == ["console=com1", "console=dtuart"]
    with pytest.raises(BootConfigError, match="QB_XEN_DOM0_MEM"):
        XenBoot(dom0_mem="lots")


def test_guest_loader_bootargs_commas_doubled_and_one_word_after_shell_splitting() -> None:
    boot = XenBoot(dom0_bootargs='console=hvc0,115200 root=/dev/vda dyndbg="file x +p"', dom0_initrd="i.gz")
    words = shlex.split(boot.opt_append().replace("@DEPLOY_DIR_IMAGE@", "/d"))
    assert words == [
        "-device", ('guest-loader,addr=0x49000000,kernel=/d/Image,bootargs=console=hvc0,,115200 root=/dev/vda '
                   'dyndbg="file x +p"'),
        "-device", "guest-loader,addr=0x4c000000,initrd=/d/i.gz"]
    # QEMU reads the value back as the plain bootargs
    assert split_option(words[1])[3] == 'bootargs=console=hvc0,115200 root=/dev/vda dyndbg="file x +p"'


def test_guest_loaders_parsed_back_from_an_argv() -> None:
    argv = ["-device", "qemu-xhci", "-device", XenBoot(dom0_bootargs="a,b").loaders("/d")[0].device(),
            "-device", "guest-loader,addr=0x4c000000,initrd=/d/i.gz"]
    kernel, initrd = guest_loaders_in(argv)
    assert (kernel.addr, kernel.path, kernel.kind, kernel.bootargs) == (0x49000000, "/d/Image", "kernel", "a,b")
    assert (initrd.addr, initrd.kind, initrd.name) == (0x4C000000, "initrd", "dom0 initrd")
    with pytest.raises(BootConfigError, match="no kernel= or initrd="):
        guest_loaders_in(["-device", "guest-loader,addr=0x1"])
    assert files_named(argv) == [("kernel", "/d/Image"), ("initrd", "/d/i.gz")]


def test_variables_round_trip_through_from_variables() -> None:
    boot = XenBoot(dom0_initrd="initrd.cpio.gz", dom0_mem="384M", cmdline_extra="loglvl=warning")
    assert XenBoot.from_variables(boot.variables()) == boot
    assert XenBoot.from_variables({"QB_MEM": "-m 1"}) is None
    assert XenBoot.from_variables({"QB_XEN_DOM0_MEM": "1G"}) == XenBoot(dom0_mem="1G")
    with pytest.raises(BootConfigError) as info:
        XenBoot.from_variables({"QB_XEN_DOM0_ADDR": "high"}, path="x.conf", line_of={"QB_XEN_DOM0_ADDR": 7})
    assert str(info.value).startswith("x.conf:7: key 'QB_XEN_DOM0_ADDR'")


def test_layout_overlap_and_ram_end_name_the_setting_and_a_value_that_fits() -> None:
    ram = RamRegion(xenboot.ARM_VIRT_RAM_BASE, 1024 * MiB)
    XenBoot(dom0_initrd="i").check_layout(ram, 40 * MiB, 8 * MiB)
    with pytest.raises(BootConfigError) as info:
        XenBoot(dom0_initrd="i").check_layout(ram, 64 * MiB, 8 * MiB)
    assert info.value.key == "QB_XEN_DOM0_INITRD_ADDR" and "set QB_XEN_DOM0_INITRD_ADDR to 0x4d000000" in str(info.value)
    with pytest.raises(BootConfigError, match="does not fit in RAM 0x40000000..0x48000000") as info:
        XenBoot().check_layout(RamRegion(xenboot.ARM_VIRT_RAM_BASE, 128 * MiB), 10 * MiB)
    assert info.value.key == "QB_XEN_DOM0_ADDR" and "raise QB_MEM" in str(info.value)


def test_layout_takes_any_number_of_modules() -> None:
    ram = RamRegion(0x40000000, 512 * MiB, "memory")
    modules = [Module("dom0 kernel", 0x49000000, 20 * MiB, "a"), Module("domU kernel", 0x50000000, 20 * MiB, "b"),
               Module("domU ramdisk", 0x51000000, MiB, "c")]
    with pytest.raises(BootConfigError, match="domU kernel .* overlaps domU ramdisk") as info:
        check_layout(modules, ram, path="boot.cfg", line_of={"c": 9})
    assert info.value.line == 9 and info.value.path == "boot.cfg"


def test_escape_and_split_are_inverse() -> None:
    for value in ("a", "a,b", "a,,b", ",lead", "trail,"):
        assert split_option("x=" + escape(value)) == ["x=" + value]


def test_loader_file_size(tmp_path: Path) -> None:
    (tmp_path / "k").write_bytes(b"k" * 10)
    assert GuestLoader(0x49000000, str(tmp_path / "k")).file_size() == 10
    assert GuestLoader(0x49000000, str(tmp_path / "none")).file_size() is None
