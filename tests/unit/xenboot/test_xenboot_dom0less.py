"""xenboot.dom0less, xenboot.devicetree and xenboot.ubootscript: layout, device tree, U-Boot script."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from xenboot import ARM_VIRT_RAM_BASE, BootConfigError, RamRegion, XenBoot
from xenboot.devicetree import (
    compile_dts,
    decompile_dtb,
    dom0less_domains_in,
    loader_options,
    merged_source,
    qemuboot_variables,
)
from xenboot.dom0less import Dom0lessDomain, chosen_fragment, place_modules
from xenboot.qemuopts import properties
from xenboot.ubootscript import UbootBoard, uboot_script

MiB = 1024 * 1024
RAM = RamRegion(ARM_VIRT_RAM_BASE, 1024 * MiB)
XEN = XenBoot(dom0_initrd="initrd.cpio.gz")
SIZES = {"Image": 33 * MiB, "initrd.cpio.gz": 1600 * 1024, "guest.cpio.gz": 3 * MiB + 5}
GUEST = Dom0lessDomain("dl1", "Image", "guest.cpio.gz", 96, 2, "console=ttyAMA0 rdinit=/sbin/init x=1")

needs_dtc = pytest.mark.skipif(shutil.which("dtc") is None, reason="dtc (device-tree-compiler) is not installed")


def _layout(*domains: Dom0lessDomain, sizes: dict[str, int] | None = None, ram: RamRegion = RAM):
    return place_modules(XEN, domains or (GUEST,), sizes or SIZES, ram, dom0_mib=384)


def test_layout_keeps_dom0_addresses_and_places_domains_after_them_aligned():
    layout = _layout(GUEST, Dom0lessDomain("dl2", "Image", "guest.cpio.gz", 64))
    modules = layout.modules()
    assert [(m.owner, m.role) for m in modules] == [
        ("dom0", "kernel"), ("dom0", "ramdisk"), ("dl1", "kernel"), ("dl1", "ramdisk"),
        ("dl2", "kernel"), ("dl2", "ramdisk")]
    assert modules[0].address == XEN.dom0_addr and modules[1].address == XEN.dom0_initrd_addr
    assert all(m.address % (2 * MiB) == 0 for m in modules)
    ordered = sorted(modules, key=lambda m: m.address)
    assert all(a.address + a.size <= b.address for a, b in zip(ordered, ordered[1:]))
    assert modules[2].address == 0x4C200000  # first 2 MiB boundary after dom0's 1.6 MB initrd
    assert modules[3].address == 0x4C200000 + 34 * MiB


def test_layout_rejects_modules_beyond_ram_naming_the_setting():
    small = RamRegion(ARM_VIRT_RAM_BASE, 200 * MiB)
    with pytest.raises(BootConfigError, match=r"dl1 kernel Image .* does not fit in RAM .*Fix: raise QB_MEM"):
        place_modules(XEN, (Dom0lessDomain("dl1", "Image", "guest.cpio.gz", 16),), SIZES, small, dom0_mib=64)


def test_layout_rejects_dom0_modules_that_overlap():
    xen = XenBoot(dom0_initrd="initrd.cpio.gz", dom0_initrd_addr=XEN.dom0_addr + 16 * MiB)
    with pytest.raises(BootConfigError, match="overlaps"):
        place_modules(xen, (GUEST,), SIZES, RAM, dom0_mib=384)


def test_memory_that_cannot_fit_names_every_domain_and_the_fix():
    big = Dom0lessDomain("big", "Image", "guest.cpio.gz", 700)
    with pytest.raises(BootConfigError, match=r"big 700 MiB.*need 1092 MiB, the machine has 1024 MiB.*"
                                              r"lower XEN_GUEST_MEMORY"):
        _layout(big)


def test_missing_file_and_duplicate_names_are_errors():
    with pytest.raises(BootConfigError, match="'missing.cpio.gz' is missing"):
        _layout(Dom0lessDomain("dl1", "Image", "missing.cpio.gz", 64))
    with pytest.raises(BootConfigError, match="named twice: dl1"):
        _layout(GUEST, GUEST)


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "bad name"}, "not a device-tree node name"),
    ({"memory_mib": 0}, "positive memory"),
    ({"ramdisk": ""}, "name both files"),
    ({"bootargs": 'a "quoted" arg'}, "quote"),
])
def test_domain_values_are_checked(kwargs, match):
    values = {"name": "dl1", "kernel": "Image", "ramdisk": "r.cpio", "memory_mib": 64, **kwargs}
    with pytest.raises(BootConfigError, match=match):
        Dom0lessDomain(**values)


def test_chosen_fragment_has_dom0_modules_and_a_xen_domain_node():
    text = chosen_fragment(_layout())
    assert "module@49000000 {" in text
    assert 'compatible = "multiboot,kernel", "multiboot,module";' in text
    assert 'bootargs = "console=hvc0 root=/dev/vda rw rootwait";' in text
    assert 'compatible = "multiboot,ramdisk", "multiboot,module";' in text
    domain = text[text.index("dl1 {"):]
    assert 'compatible = "xen,domain";' in domain
    assert "memory = <0x0 0x18000>;" in domain        # 96 MiB in KiB, two cells
    assert "cpus = <0x2>;" in domain
    assert 'xen,enhanced = "enabled";' in domain
    assert "vpl011;" in domain
    assert f"reg = <0x0 0x4c200000 0x0 {33 * MiB:#x}>;" in domain
    assert 'bootargs = "console=ttyAMA0 rdinit=/sbin/init x=1";' in domain


def test_enhanced_off_leaves_the_property_out():
    off = Dom0lessDomain("dl1", "Image", "guest.cpio.gz", 64, enhanced=False)
    assert "xen,enhanced" not in chosen_fragment(_layout(off))


def test_loader_options_place_every_module_raw_at_its_address():
    layout = _layout()
    args = loader_options(layout, "/deploy")
    devices = [properties(v) for o, v in zip(args[::2], args[1::2]) if o == "-device"]
    assert [(d["file"], int(d["addr"], 0), d["force-raw"]) for d in devices] == [
        (f"/deploy/{m.file}", m.address, "on") for m in layout.modules()]
    assert all(v.startswith("loader,") for v in args[1::2])


def test_qemuboot_variables_use_dtb_and_loaders_and_list_the_domains():
    values = qemuboot_variables(_layout(), "host.dom0less.dtb")
    assert values["QB_DTB"] == "host.dom0less.dtb"
    words = shlex.split(values["QB_OPT_APPEND"])
    assert "guest-loader" not in values["QB_OPT_APPEND"] and words.count("-device") == 4
    assert "@DEPLOY_DIR_IMAGE@/guest.cpio.gz" in values["QB_OPT_APPEND"]
    assert dom0less_domains_in(values) == [("dl1", GUEST.bootargs)]
    assert dom0less_domains_in({}) == []


_MACHINE_DTS = """/dts-v1/;

/ {
\t#address-cells = <0x02>;
\t#size-cells = <0x02>;
\tcompatible = "linux,dummy-virt";

\tmemory@40000000 {
\t\treg = <0x00 0x40000000 0x00 0x40000000>;
\t\tdevice_type = "memory";
\t};

\tchosen {
\t\tstdout-path = "/pl011@9000000";
\t\trng-seed = <0x1 0x2>;
\t\tkaslr-seed = <0x3 0x4>;
\t};
};
"""


def test_merged_source_drops_the_random_seeds_and_appends_the_nodes():
    text = merged_source(_MACHINE_DTS, _layout())
    assert "rng-seed" not in text and "kaslr-seed" not in text
    assert text.index('stdout-path = "/pl011@9000000";') < text.index('compatible = "xen,domain";')


@needs_dtc
def test_generated_source_compiles_with_dtc_into_one_chosen_node(tmp_path: Path):
    dtb = compile_dts(merged_source(_MACHINE_DTS, _layout()), tmp_path / "out.dtb")
    back = decompile_dtb(dtb)
    assert back.count("chosen {") == 1
    chosen = back[back.index("chosen {"):]
    assert 'stdout-path = "/pl011@9000000";' in chosen
    assert 'compatible = "multiboot,kernel\\0multiboot,module";' in chosen
    assert re.search(r"dl1 \{\s+compatible = \"xen,domain\";", chosen)
    assert "memory = <0x00 0x18000>;" in chosen


@needs_dtc
def test_dtc_errors_become_boot_config_errors(tmp_path: Path):
    with pytest.raises(BootConfigError, match="compiling"):
        compile_dts("/dts-v1/;\n/ { broken", tmp_path / "bad.dtb")


@needs_dtc
@pytest.mark.skipif(shutil.which("qemu-system-aarch64") is None, reason="qemu-system-aarch64 is not installed")
def test_dump_of_the_real_machine_tree_merges(tmp_path: Path):
    from xenboot.devicetree import dump_machine_dtb

    dumped = dump_machine_dtb("qemu-system-aarch64", ["-machine", "virt,gic-version=3,virtualization=on",
                                                      "-cpu", "cortex-a57", "-smp", "2", "-m", "1024"],
                              tmp_path / "virt.dtb")
    dtb = compile_dts(merged_source(decompile_dtb(dumped), _layout()), tmp_path / "x.dtb")
    back = subprocess.run(["dtc", "-q", "-I", "dtb", "-O", "dts", str(dtb)], capture_output=True, text=True,
                          check=True).stdout
    assert "xen,domain" in back and "pl011@9000000" in back and "rng-seed" not in back


def test_dump_needs_one_machine_option(tmp_path: Path):
    from xenboot.devicetree import dump_machine_dtb

    with pytest.raises(BootConfigError, match="0 -machine options"):
        dump_machine_dtb("qemu-system-aarch64", ["-cpu", "max"], tmp_path / "x.dtb")


def test_uboot_script_loads_checks_sizes_adds_nodes_and_boots():
    board = UbootBoard(load_source="mmc 0:1", xen_addr=0x40200000, fdt_addr=0x44000000)
    text = uboot_script(_layout(), board, RAM)
    lines = text.splitlines()
    assert "load mmc 0:1 0x4c200000 Image || exit" in lines
    assert any(line.startswith("if test 0x${filesize} -gt 0x300005;") for line in lines)
    assert "fdt addr 0x44000000" in lines and "fdt mknode /chosen dl1" in lines
    assert 'fdt set /chosen/dl1 compatible "xen,domain"' in lines
    assert "fdt set /chosen/dl1 memory <0x0 0x18000>" in lines
    assert 'fdt set /chosen/dl1 xen,enhanced "enabled"' in lines
    assert 'fdt set /chosen/dl1/module@4c200000 bootargs "console=ttyAMA0 rdinit=/sbin/init x=1"' in lines
    assert 'fdt set /chosen/module@49000000 bootargs "console=hvc0 root=/dev/vda rw rootwait"' in lines
    assert lines[-1] == "booti 0x40200000 - 0x44000000"
    assert lines.index("fdt addr 0x44000000") > max(i for i, l in enumerate(lines) if l.startswith("load "))


def test_uboot_script_rejects_a_tree_that_overlaps_a_module():
    board = UbootBoard(fdt_addr=0x49000000)
    with pytest.raises(BootConfigError, match=r"overlaps"):
        uboot_script(_layout(), board, RAM)


@needs_dtc
@pytest.mark.skipif(shutil.which("qemu-system-aarch64") is None, reason="qemu-system-aarch64 is not installed")
def test_qemu_leaves_guest_loader_nodes_out_of_a_tree_given_with_dtb(tmp_path: Path):
    """Why the dom0less boot places dom0's modules with loader devices and its own nodes."""
    from xenboot.devicetree import dump_machine_dtb

    machine = ["-machine", "virt,gic-version=3,virtualization=on", "-cpu", "cortex-a57", "-smp", "2", "-m", "1024"]
    kernel = tmp_path / "kernel"
    kernel.write_bytes(b"\0" * 64)
    loader = ["-kernel", str(kernel), "-device", f"guest-loader,addr=0x49000000,kernel={kernel},bootargs=x"]
    plain = dump_machine_dtb("qemu-system-aarch64", machine, tmp_path / "plain.dtb")
    generated = dump_machine_dtb("qemu-system-aarch64", machine + loader, tmp_path / "generated.dtb")
    given = dump_machine_dtb("qemu-system-aarch64", machine + loader + ["-dtb", str(plain)], tmp_path / "given.dtb")
    assert "multiboot,kernel" in decompile_dtb(generated)
    assert "multiboot" not in decompile_dtb(given)


def test_without_dom0_the_domains_start_at_dom0s_kernel_address_and_no_dom0_node_is_written():
    layout = place_modules(None, (GUEST,), SIZES, RAM, dom0_mib=0)
    assert layout.dom0 == () and layout.modules()[0].address == XEN.dom0_addr
    text = chosen_fragment(layout)
    assert text.count("module@") == 2 and 'compatible = "xen,domain";' in text
    with pytest.raises(BootConfigError, match="no dom0 and no dom0less domain"):
        place_modules(None, (), SIZES, RAM, dom0_mib=0)
