"""classes/xen-ref-qemuboot.bbclass and xenboot agree: the class's QB_XEN_* defaults are xenboot's
constants, and what BitBake composes from the QB_XEN_* variables (Xen's command line, the
guest-loader devices) is what xenboot composes from the same values.  With an oe-core checkout,
oe-core's own do_write_qemuboot_conf writes the bytes xenboot.render_qemuboot writes.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
from pathlib import Path

import bb.build
import pytest
import xenboot
from xenboot import XenBoot

# What qemuarm64.conf sets (hard assignments) before the class, as in test_parse_wiring.
RECIPE = """\
inherit xen-ref-qemuboot
QB_MACHINE = "-machine virt"
QB_CPU = "-cpu cortex-a57"
QB_OPT_APPEND = "-device qemu-xhci -device usb-tablet -device usb-kbd"
"""

CONTRACT_KEYS = ("QB_XEN_CMDLINE", "QB_XEN_CMDLINE_EXTRA", "QB_XEN_CONSOLE", "QB_XEN_DOM0_MEM", "QB_XEN_DOM0_KERNEL",
                 "QB_XEN_DOM0_ADDR", "QB_XEN_DOM0_BOOTARGS", "QB_XEN_DOM0_INITRD", "QB_XEN_DOM0_INITRD_ADDR",
                 "QB_XEN_GUEST_LOADER")


def contract(d) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {key: d.getVar(key) or "" for key in CONTRACT_KEYS}


def test_class_defaults_are_xenboots_constants(project) -> None:  # type: ignore[no-untyped-def]
    d = project.parse("xen-image-minimal", RECIPE)
    assert int(d.getVar("QB_XEN_DOM0_ADDR"), 0) == xenboot.DOM0_KERNEL_ADDR
    assert int(d.getVar("QB_XEN_DOM0_INITRD_ADDR"), 0) == xenboot.DOM0_INITRD_ADDR
    assert d.getVar("QB_XEN_DOM0_BOOTARGS") == xenboot.DOM0_BOOTARGS
    assert d.getVar("QB_XEN_DOM0_MEM") == xenboot.DOM0_MEM
    assert d.getVar("QB_XEN_DOM0_KERNEL") == xenboot.DOM0_KERNEL
    assert d.getVar("QB_XEN_DOM0_INITRD") == "" and d.getVar("QB_XEN_CMDLINE_EXTRA") == ""
    assert XenBoot.from_variables(contract(d)) == XenBoot()
    # Xen splits its command line at blanks: the same words in the same order, console=dtuart last
    assert d.getVar("QB_XEN_CMDLINE").split() == xenboot.xen_cmdline().split()
    assert d.getVar("QB_XEN_CMDLINE").split()[-1] == xenboot.XEN_CONSOLE
    host = xenboot.XenHostBoot()
    assert d.getVar("QB_MEM") == host.variables()["QB_MEM"]
    assert d.getVar("QB_MACHINE") == host.variables()["QB_MACHINE"]
    assert d.getVar("QB_DEFAULT_KERNEL") == host.xen_binary


@pytest.mark.parametrize("local_conf, expected", [
    ("", XenBoot()),
    ('QB_XEN_DOM0_INITRD = "initrd.cpio.gz"\nQB_XEN_DOM0_INITRD_ADDR = "0x50000000"\n',
     XenBoot(dom0_initrd="initrd.cpio.gz", dom0_initrd_addr=0x50000000)),
    ('QB_XEN_DOM0_BOOTARGS = "console=hvc0 root=/dev/vda rw video=a,b"\nQB_XEN_DOM0_MEM = "1G"\n'
     + 'QB_XEN_CMDLINE_EXTRA = "loglvl=all"\nQB_XEN_DOM0_ADDR = "0x48000000"\n',
     XenBoot(dom0_bootargs="console=hvc0 root=/dev/vda rw video=a,b", dom0_mem="1G", cmdline_extra="loglvl=all",
             dom0_addr=0x48000000)),
])
def test_class_composes_what_xenboot_composes(project, local_conf: str, expected: XenBoot) -> None:  # type: ignore[no-untyped-def]
    d = project.parse("xen-image-minimal", RECIPE, local_conf)
    boot = XenBoot.from_variables(contract(d))
    assert boot == expected
    assert d.getVar("QB_XEN_CMDLINE").split() == boot.xen_cmdline().split()
    assert d.getVar("QB_XEN_GUEST_LOADER") == boot.variables()["QB_XEN_GUEST_LOADER"]
    # runqemu splits QB_OPT_APPEND like a shell: the same QEMU arguments either way
    assert shlex.split(d.getVar("QB_OPT_APPEND")) == shlex.split(boot.opt_append())
    assert d.getVar("QB_KERNEL_CMDLINE_APPEND") == d.getVar("QB_XEN_CMDLINE")


def oecore_meta() -> Path:
    """oe-core's meta folder: XEN_REF_OECORE (first entry) or a checkout setup-oe-env made."""
    value = os.environ.get("XEN_REF_OECORE", "")
    candidates = [p for p in value.split(":") if p] or sorted(glob.glob("/opt/oe-env/*/openembedded-core"))
    for path in candidates:
        if (Path(path) / "meta" / "classes-recipe" / "qemuboot.bbclass").is_file():
            return Path(path) / "meta"
    pytest.fail("needs an openembedded-core checkout: set XEN_REF_OECORE or create one with "
                "/work/shared/tools/setup-oe-env; deselect with -m 'not oecore'", pytrace=False)


@pytest.mark.oecore
def test_oe_cores_writer_writes_what_xenboot_renders(project) -> None:  # type: ignore[no-untyped-def]
    """oe-core's do_write_qemuboot_conf (its code, run by BitBake) and xenboot.render_qemuboot."""
    # As on wrynose, image.bbclass inherits IMAGE_CLASSES (qemuboot) after the recipe's classes.
    recipe = RECIPE + "inherit qemuboot\n"
    local = ('DATETIME = "20261129000000"\nBASE_WORKDIR = "${TMPDIR}/work"\nBUILD_SYS = "x86_64-linux"\n'
             'QB_XEN_DOM0_INITRD = "initrd.cpio.gz"\nQB_XEN_DOM0_BOOTARGS = "console=hvc0 root=/dev/vda rw a,b"\n')
    d = project.parse("xen-image-minimal", recipe, local, extra_bbpath=str(oecore_meta()))
    os.makedirs(d.getVar("IMGDEPLOYDIR"), exist_ok=True)
    bb.build.exec_func("do_write_qemuboot_conf", d)
    written = Path(d.getVar("IMGDEPLOYDIR")) / f"{d.getVar('IMAGE_NAME')}.qemuboot.conf"
    text = written.read_text()
    values = dict(xenboot.read_qemuboot(written).written)
    # Same keys, order and values; oe-core also writes a value's leading blanks (QB_XEN_INITRD_LOADER
    # starts with one), which configparser, and so runqemu, strips when reading.
    assert xenboot.render_qemuboot(values).splitlines() == [re.sub(r" = +", " = ", line) for line in text.splitlines()]
    assert XenBoot.from_variables(values) == XenBoot(dom0_initrd="initrd.cpio.gz",
                                                     dom0_bootargs="console=hvc0 root=/dev/vda rw a,b")
