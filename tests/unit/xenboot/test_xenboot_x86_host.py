"""xenboot.X86XenHostBoot: a qemuboot.conf for Xen on x86-64 through QEMU's multiboot loader."""

from __future__ import annotations

import shlex

import pytest
import xenboot
from xenboot import BootConfigError, X86XenHostBoot, XenBoot, arch_defaults


def test_defaults_are_the_contracts_x86_defaults():
    boot = X86XenHostBoot()
    values = boot.variables()
    assert boot.xen == arch_defaults("x86_64")
    assert values["QB_XEN_CMDLINE"] == values["QB_KERNEL_CMDLINE_APPEND"]
    assert values["QB_KERNEL_CMDLINE_APPEND"].split()[-2:] == ["com1=115200,8n1", "console=com1"]
    assert values["QB_XEN_DOM0_KERNEL"] == values["KERNEL_IMAGETYPE"] == "bzImage"
    assert values["QB_XEN_GUEST_LOADER"] == ""
    assert values["QB_SYSTEM_NAME"] == "qemu-system-x86_64" and values["TUNE_ARCH"] == "x86_64"


def test_module_command_lines_keep_their_commas_doubled_and_round_trip():
    boot = X86XenHostBoot(xen=XenBoot(dom0_kernel="bzImage", dom0_initrd="initrd.gz",
                                      dom0_bootargs="console=hvc0 xen_blkfront.x=1,2 quiet",
                                      console=xenboot.X86_XEN_CONSOLE))
    option = boot.variables()["QB_OPT_APPEND"]
    assert ",,2" in option
    args = shlex.split(option)
    assert args[0] == "-initrd"
    assert xenboot.multiboot_modules(args) == [
        ("@DEPLOY_DIR_IMAGE@/bzImage", "console=hvc0 xen_blkfront.x=1,2 quiet"),
        ("@DEPLOY_DIR_IMAGE@/initrd.gz", "")]


def test_without_an_initrd_dom0_is_the_only_module():
    args = shlex.split(X86XenHostBoot().variables()["QB_OPT_APPEND"])
    assert [path for path, _ in xenboot.multiboot_modules(args)] == ["@DEPLOY_DIR_IMAGE@/bzImage"]


def test_modules_that_fill_memory_are_refused_naming_qb_mem():
    with pytest.raises(BootConfigError, match="QB_MEM"):
        X86XenHostBoot(memory_mb=256).check_layout(100 << 20, 40 << 20)
    X86XenHostBoot(memory_mb=1024).check_layout(8 << 20, 2 << 20)


def test_multiboot_modules_ignores_other_options():
    assert xenboot.multiboot_modules(["-kernel", "xen", "-append", "a,b", "-m", "512"]) == []
