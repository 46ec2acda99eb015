"""xenboot.multiboot: Xen on x86 as a multiboot kernel, written for syslinux, GRUB and QEMU;
and the contract's per-architecture defaults (Xen's console, dom0's root)."""

from __future__ import annotations

import shlex

import pytest
import xenboot
from hypothesis import given
from hypothesis import strategies as st
from xenboot import BootConfigError, MultibootXen, SerialPort, XenBoot, arch_defaults
from xenboot.multiboot import (
    grub_config,
    image_boot_config,
    live_bootargs,
    parse_serial,
    parse_timeout,
)

X86 = arch_defaults("x86_64")
VALUES = {
    "QB_XEN_CMDLINE": X86.xen_cmdline(),
    "QB_XEN_DOM0_BOOTARGS": X86.dom0_bootargs,
    "QB_XEN_DOM0_INITRD": "",
    "KERNEL_IMAGETYPE": "bzImage",
    "XEN_REF_BOOT_TIMEOUT": "1",
    "XEN_REF_BOOT_SERIAL": "0 115200",
    "ROOT_LIVE": "root=/dev/ram0",
    "INITRD": "/deploy/core-image-minimal-initramfs-qemux86-64.cpio.gz",
}
HEADER = "# Xen, with dom0's kernel as its first multiboot module (meta-xen-ref, xenboot.multiboot).\n"
XEN_LINE = "dom0_mem=512M,max:512M bootscrub=0 com1=115200,8n1 console=com1"
DOM0_LINE = "console=hvc0 earlyprintk=xen root=/dev/sda2 rw rootwait"


# ----------------------------------------------------------------- per-architecture defaults

def test_arch_defaults_differ_in_console_root_and_kernel_only() -> None:
    arm64, arm, x86 = (arch_defaults(a) for a in ("aarch64", "arm", "x86_64"))
    assert arm64 == XenBoot()
    assert arm == XenBoot(dom0_kernel="zImage")
    assert x86 == XenBoot(dom0_kernel="bzImage", dom0_bootargs=xenboot.X86_DOM0_BOOTARGS,
                          console=xenboot.X86_XEN_CONSOLE)
    assert arm.xen_cmdline().split()[-1] == "console=dtuart"
    assert x86.xen_cmdline() == XEN_LINE        # COM1 set up before it is chosen, console= last
    with pytest.raises(BootConfigError, match="TARGET_ARCH.*riscv64.*aarch64, arm, x86_64"):
        arch_defaults("riscv64")


def test_console_is_part_of_the_contract_and_must_end_with_console() -> None:
    x86 = arch_defaults("x86_64")
    assert x86.variables()["QB_XEN_CONSOLE"] == "com1=115200,8n1 console=com1"
    assert XenBoot.from_variables(x86.variables()) == x86
    # a qemuboot.conf written before QB_XEN_CONSOLE existed reads as Arm's console
    assert XenBoot.from_variables({"QB_XEN_DOM0_MEM": "512M"}) == XenBoot()
    with pytest.raises(BootConfigError, match="QB_XEN_CONSOLE.*does not end with a console="):
        XenBoot(console="com1=115200,8n1")
    with pytest.raises(BootConfigError, match="QB_XEN_CONSOLE"):
        XenBoot.from_variables({"QB_XEN_CONSOLE": "  "})


# ----------------------------------------------------------------- the three writers

def test_syslinux_config_boots_xen_with_dom0_as_module() -> None:
    assert image_boot_config(VALUES, "syslinux") == HEADER + (
        "SERIAL 0 115200\nDEFAULT xen\nPROMPT 1\nTIMEOUT 10\n\n"
        "LABEL xen\n  KERNEL mboot.c32\n"
        f"  APPEND /xen.gz {XEN_LINE} --- /bzImage {DOM0_LINE}\n")


def test_grub_config_boots_xen_with_multiboot2() -> None:
    assert image_boot_config(VALUES, "grub") == HEADER + (
        "serial --unit=0 --speed=115200 --word=8 --parity=no --stop=1\n"
        "terminal_input serial console\nterminal_output serial console\n"
        "set default=0\nset timeout=1\n\n"
        "menuentry 'xen' {\n"
        f"\tmultiboot2 /xen.gz {XEN_LINE}\n"
        f"\tmodule2 /bzImage {DOM0_LINE}\n"
        "}\n")


def test_dom0_initrd_is_the_second_module_under_its_file_name() -> None:
    values = dict(VALUES, QB_XEN_DOM0_INITRD="sub/initrd.cpio.gz", XEN_REF_BOOT_TIMEOUT="0",
                  XEN_REF_BOOT_SERIAL="")
    syslinux = image_boot_config(values, "syslinux")
    assert syslinux.endswith(f"--- /bzImage {DOM0_LINE} --- /initrd.cpio.gz\n")
    assert "SERIAL" not in syslinux and "PROMPT 0\nTIMEOUT 0\n" in syslinux
    grub = image_boot_config(values, "grub")
    assert "\tmodule2 /initrd.cpio.gz\n}" in grub
    assert "serial" not in grub and "set timeout=0\n" in grub


def test_live_images_boot_dom0_from_the_live_initrd() -> None:
    line = "console=hvc0 earlyprintk=xen rw root=/dev/ram0 LABEL=boot"
    assert live_bootargs(DOM0_LINE) == line
    assert image_boot_config(VALUES, "syslinux", live=True).endswith(f"--- /bzImage {line} --- /initrd\n")
    assert f"\tmodule2 /bzImage {line}\n\tmodule2 /initrd\n" in image_boot_config(VALUES, "grub", live=True)
    no_initrd = image_boot_config(dict(VALUES, INITRD=""), "syslinux", live=True)
    assert no_initrd.endswith(f"/bzImage {line}\n")


def test_qemu_multiboot_arguments_double_commas_in_modules() -> None:
    boot = MultibootXen("/d/xen", XEN_LINE, "/d/bzImage", "console=hvc0 video=a,b", "/d/initrd,1.gz")
    assert boot.qemu_args() == ["-kernel", "/d/xen", "-append", XEN_LINE,
                                "-initrd", "/d/bzImage console=hvc0 video=a,,b,/d/initrd,,1.gz"]
    assert MultibootXen("x", "", "k", "").qemu_args()[-1] == "k"


def test_grub_quotes_words_its_lexer_would_change() -> None:
    boot = MultibootXen("/xen.gz", "a;b $x", "/bzImage", "dyndbg=+p#1 {x}")
    text = grub_config(boot, timeout=0, serial=None)
    assert "\tmultiboot2 /xen.gz 'a;b' '$x'\n" in text
    assert "\tmodule2 /bzImage 'dyndbg=+p#1' '{x}'\n" in text


WORDS = st.lists(st.text("abcxyz019=,.:/-_+@;$#{}", min_size=1, max_size=8).filter(lambda w: w != "---"),
                 max_size=6)


@given(WORDS, WORDS)
def test_every_loader_hands_xen_and_dom0_the_words_written(xen: list[str], dom0: list[str]) -> None:
    boot = MultibootXen("/xen.gz", " ".join(xen), "/bzImage", " ".join(dom0), "/initrd")
    # mboot.c32 splits its arguments at blanks and groups them at "---"
    words = xenboot.multiboot.syslinux_entry(boot).splitlines()[2].split()[1:]
    groups: list[list[str]] = [[]]
    for word in words:
        if word == "---":
            groups.append([])
        else:
            groups[-1].append(word)
    assert groups == [["/xen.gz", *xen], ["/bzImage", *dom0], ["/initrd"]]
    # GRUB's lexer removes single quotes like a POSIX shell does
    lines = [line.strip() for line in grub_config(boot, serial=None).splitlines() if line.startswith("\t")]
    assert [shlex.split(line) for line in lines] == [["multiboot2", "/xen.gz", *xen],
                                                     ["module2", "/bzImage", *dom0], ["module2", "/initrd"]]
    # QEMU: the module string up to the first unescaped comma, commas doubled
    assert boot.qemu_args()[-1].replace(",,", "\0").split(",")[0].replace("\0", ",") == \
        " ".join(["/bzImage", *dom0])


# ----------------------------------------------------------------- hostile settings

@pytest.mark.parametrize("values, loader, key, words", [
    ({"QB_XEN_DOM0_BOOTARGS": "console=hvc0 --- x"}, "syslinux", "QB_XEN_DOM0_BOOTARGS", "'---'"),
    ({"QB_XEN_CMDLINE": "a --- b"}, "syslinux", "QB_XEN_CMDLINE", "next module"),
    ({"QB_XEN_DOM0_BOOTARGS": 'dyndbg="file x +p"'}, "grub", "QB_XEN_DOM0_BOOTARGS", "quote or backslash"),
    ({"QB_XEN_CMDLINE": "a\\b"}, "grub", "QB_XEN_CMDLINE", "quote or backslash"),
    ({"QB_XEN_DOM0_BOOTARGS": "a\nb"}, "grub", "QB_XEN_DOM0_BOOTARGS", "line break"),
    ({"QB_XEN_DOM0_INITRD": "my initrd"}, "syslinux", "QB_XEN_DOM0_INITRD", "blanks"),
    ({"KERNEL_IMAGETYPE": ""}, "syslinux", "KERNEL_IMAGETYPE", "no name"),
    ({"XEN_REF_BOOT_TIMEOUT": "soon"}, "grub", "XEN_REF_BOOT_TIMEOUT", "seconds"),
    ({"XEN_REF_BOOT_SERIAL": "ttyS0"}, "grub", "XEN_REF_BOOT_SERIAL", "0 115200"),
])
def test_settings_the_loader_cannot_carry_are_refused_naming_the_variable(
        values: dict[str, str], loader: str, key: str, words: str) -> None:
    with pytest.raises(BootConfigError) as caught:
        image_boot_config(dict(VALUES, **values), loader)
    assert caught.value.key == key
    assert words in str(caught.value)


def test_only_the_loader_that_reads_a_word_refuses_it() -> None:
    values = dict(VALUES, QB_XEN_DOM0_BOOTARGS="a --- b")
    assert "module2 /bzImage a --- b" in image_boot_config(values, "grub")
    quoted = dict(VALUES, QB_XEN_DOM0_BOOTARGS='x="a"')
    assert 'x="a"' in image_boot_config(quoted, "syslinux")


def test_unknown_loader_label_serial_and_timeout() -> None:
    with pytest.raises(BootConfigError, match="use one of syslinux, grub"):
        image_boot_config(VALUES, "lilo")
    with pytest.raises(BootConfigError, match="plain word"):
        MultibootXen("/xen.gz", "", "/bzImage", "", label="my xen")
    assert parse_serial("1 9600") == SerialPort(1, 9600)
    assert parse_serial("  ") is None
    with pytest.raises(BootConfigError):
        parse_serial("7 115200")
    assert parse_timeout(" 5 ") == 5
    with pytest.raises(BootConfigError):
        parse_timeout("-1")
