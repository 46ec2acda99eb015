"""qemuboot.conf and YAML target readers."""

from __future__ import annotations

from pathlib import Path

import pytest
from xenqemu.target import TargetError, load_target, parse_memory
from xq_unit_helpers import GOOD_YAML, OE_QEMUBOOT, write, yaml_target


def test_oe_core_xen_image_minimal_conf(oe_deploy: Path) -> None:
    target = load_target(oe_deploy / "xen-image-minimal-qemuarm64.rootfs.qemuboot.conf")
    assert target.kind == "qemuboot"
    assert target.name == "xen-image-minimal-qemuarm64.rootfs"
    assert target.qemu_binary == "qemu-system-aarch64"
    # kernel = DEPLOY_DIR_IMAGE/basename(QB_DEFAULT_KERNEL), DEPLOY_DIR_IMAGE = the conf's folder
    assert target.kernel == oe_deploy.resolve() / "xen-qemuarm64-4.18+git-r0"
    assert target.rootfs == oe_deploy.resolve() / "xen-image-minimal-qemuarm64.rootfs.ext4"
    assert target.memory_mib == 1024
    assert target.smp_args == ["-smp", "4"]
    assert target.cpu_args == ["-cpu", "cortex-a57"]
    assert target.is_xen
    # -append carries only QB_KERNEL_CMDLINE_APPEND for Xen (no root=, console=ttyAMA0, ip=)
    assert target.kernel_cmdline == "dom0_mem=512M,max:512M bootscrub=0 console=dtuart swiotlb=0"
    # @DEPLOY_DIR_IMAGE@ substituted, quoted bootargs kept as one argument
    loader = [a for a in target.extra_args if a.startswith("guest-loader,addr=0x49000000")]
    assert loader == [(f"guest-loader,addr=0x49000000,kernel={oe_deploy.resolve()}/Image,"
                      "bootargs=console=hvc0 root=/dev/vda rw")]
    assert target.network_device_args == ["-device", "virtio-net-device,netdev=net0,mac=52:54:00:12:35:02"]
    assert target.rootfs_args[1] == "id=disk0,file=@ROOTFS@,if=none,format=raw"
    # Xen needs EL2 and GICv3: added to "-machine virt", with a note
    assert target.machine_args == ["-machine", "virt", "-machine", "virtualization=on", "-machine", "gic-version=3"]
    assert any("virtualization=on" in n for n in target.notes)
    assert any("QB_SERIAL_OPT ignored" in n for n in target.notes)


def test_relative_values_resolved_against_conf_folder(oe_deploy: Path) -> None:
    target = load_target(oe_deploy / "xen-image-minimal-qemuarm64.rootfs.qemuboot.conf")
    native = target.variables["STAGING_BINDIR_NATIVE"]
    assert Path(native).is_absolute() and "qemu-helper-native" in native
    assert target.variables["DEPLOY_DIR_IMAGE"] == str(oe_deploy.resolve())


def test_moved_deploy_folder_still_works(oe_deploy: Path, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere"
    oe_deploy.rename(moved)
    target = load_target(moved / "xen-image-minimal-qemuarm64.rootfs.qemuboot.conf")
    assert target.kernel is not None and target.kernel.parent == moved.resolve()


def test_kernel_falls_back_to_kernel_imagetype(tmp_path: Path) -> None:
    conf = tmp_path / "img.qemuboot.conf"
    conf.write_text("[config_bsp]\nqb_system_name = qemu-system-aarch64\nqb_machine = -machine virt\n"
                    "qb_default_kernel = Image-missing\nkernel_imagetype = Image\nqb_mem = 512M\n")
    write(tmp_path / "Image-1.2.3.bin")
    target = load_target(conf)
    assert target.kernel == tmp_path.resolve() / "Image-1.2.3.bin"
    assert not target.is_xen
    assert target.memory_mib == 512
    # plain Linux: runqemu's composition
    assert target.kernel_cmdline == "root=/dev/vda rw mem=512M ip=dhcp"


def test_kernel_cmdline_none_gives_empty_xen_append(oe_deploy: Path) -> None:
    conf = oe_deploy / "xen-image-minimal-qemuarm64.rootfs.qemuboot.conf"
    conf.resolve().write_text(OE_QEMUBOOT.replace("qb_kernel_root", "qb_kernel_cmdline = none\nqb_kernel_root"))
    assert load_target(conf).kernel_cmdline == ""


@pytest.mark.parametrize("value, mib", [("-m 256", 256), ("512", 512), ("512M", 512), ("-m 1024m", 1024),
                                        ("1G", 1024), ("1.5G", 1536), (2048, 2048)])
def test_memory_forms(value: object, mib: int) -> None:
    assert parse_memory(value, "f", "QB_MEM") == mib


@pytest.mark.parametrize("value", ["lots", "-m", "12", "0.3G", "1T"])
def test_bad_memory_named(value: str) -> None:
    with pytest.raises(TargetError) as info:
        parse_memory(value, "conf", "QB_MEM")
    assert "QB_MEM" in str(info.value) and "Fix:" in str(info.value)


def test_missing_rootfs_error_names_key_and_fix(oe_deploy: Path) -> None:
    (oe_deploy / "xen-image-minimal-qemuarm64.rootfs.ext4").unlink()
    (oe_deploy / "xen-image-minimal-qemuarm64.rootfs-20261126120000.ext4").unlink()
    with pytest.raises(TargetError) as info:
        load_target(oe_deploy / "xen-image-minimal-qemuarm64.rootfs.qemuboot.conf")
    message = str(info.value)
    assert "QB_DEFAULT_FSTYPE" in message and "xen-image-minimal-qemuarm64.rootfs.ext4" in message
    assert "IMAGE_FSTYPES" in message
    assert ".qemuboot.conf:" in message  # file and line


def test_missing_guest_loader_file_named(oe_deploy: Path) -> None:
    (oe_deploy / "initrd.cpio.gz").unlink()
    with pytest.raises(TargetError, match=r"QB_OPT_APPEND.*initrd=.*initrd.cpio.gz does not exist"):
        load_target(oe_deploy / "xen-image-minimal-qemuarm64.rootfs.qemuboot.conf")


def test_compressed_rootfs_rejected_with_fix(oe_deploy: Path) -> None:
    conf = (oe_deploy / "xen-image-minimal-qemuarm64.rootfs.qemuboot.conf").resolve()
    conf.write_text(OE_QEMUBOOT.replace("qb_default_fstype = ext4", "qb_default_fstype = ext4.zst"))
    with pytest.raises(TargetError, match="QB_DEFAULT_FSTYPE.*ext4.zst.*Fix: set QB_DEFAULT_FSTYPE"):
        load_target(conf)


def test_not_a_qemuboot_conf(tmp_path: Path) -> None:
    conf = tmp_path / "x.qemuboot.conf"
    conf.write_text("[other]\na = b\n")
    with pytest.raises(TargetError, match=r"no \[config_bsp\] section"):
        load_target(conf)
    with pytest.raises(TargetError, match="file not found"):
        load_target(tmp_path / "missing.qemuboot.conf")


# ----------------------------------------------------------------------------------- YAML


def test_yaml_target(tmp_path: Path) -> None:
    target = load_target(yaml_target(tmp_path, GOOD_YAML))
    base = tmp_path.resolve() / "img"
    assert target.kind == "yaml" and target.name == "debian-xen"
    assert target.kernel == base / "xen"
    assert target.kernel_cmdline == "dom0_mem=384M,max:384M bootscrub=0 console=dtuart"
    assert target.dom0 is not None and target.dom0.kernel == base / "vmlinuz"
    assert target.dom0.initrd == base / "initrd.gz"
    # the QB_XEN_* contract's defaults (xenboot), the same for qemuboot.conf, YAML and the class
    assert target.dom0.kernel_addr == 0x49000000
    assert target.dom0.resolved_initrd_addr() == 0x4C000000
    assert target.memory_mib == 1024
    assert target.rootfs == base / "dom0.ext4"
    assert target.extra_args == ["-device", "virtio-rng-device"]


@pytest.mark.parametrize("text, key, words", [
    (GOOD_YAML + "colour: blue\n", "colour", "unknown key"),
    (GOOD_YAML.replace("memory: 1G", "memory: lots"), "memory", "bad memory value"),
    (GOOD_YAML.replace("img/dom0.ext4", "img/nothere.ext4"), "rootfs", "file not found"),
    (GOOD_YAML.replace("kernel: img/xen\n", ""), "kernel", "missing"),
    (GOOD_YAML.replace("  initrd: img/initrd.gz", "  initramfs: img/initrd.gz"), "dom0.initramfs", "unknown key"),
    (GOOD_YAML.replace("smp: 2", "smp: two"), "smp", "bad CPU count"),
    (GOOD_YAML.replace("memory: 1G", "memory: 64"), "dom0.kernel_addr", "does not fit in RAM"),
    (GOOD_YAML.replace("  initrd: img/initrd.gz", "  initrd: img/initrd.gz\n  initrd_addr: 0x49100000"),
     "dom0.initrd_addr", "overlaps dom0 initrd"),
])
def test_yaml_errors_name_file_key_line_and_fix(tmp_path: Path, text: str, key: str, words: str) -> None:
    path = yaml_target(tmp_path, text)
    with pytest.raises(TargetError) as info:
        load_target(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert f"key '{key}'" in message and words in message and "Fix:" in message
    if key in ("colour", "memory", "rootfs", "smp", "dom0.initramfs"):
        assert info.value.line is not None and f":{info.value.line}:" in message


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    path = yaml_target(tmp_path, "kernel: [unclosed\n")
    with pytest.raises(TargetError, match=r"target.yaml:\d+: not valid YAML"):
        load_target(path)
