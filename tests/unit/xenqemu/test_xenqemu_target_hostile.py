"""Target files that are not what they claim to be (issue 10, finding 9): clear TargetErrors only."""

from __future__ import annotations

from pathlib import Path

import pytest
from xenqemu.target import TargetError, load_target
from xq_unit_helpers import GOOD_YAML, OE_QEMUBOOT, yaml_target


def error_of(path: Path) -> TargetError:
    with pytest.raises(TargetError) as info:
        load_target(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "Fix:" in message
    assert len(message) < 1000, "errors stay short"
    return info.value


@pytest.mark.parametrize("name", ["image.qemuboot.conf", "target.yaml", "target.yml", "something"])
def test_binary_file_is_not_utf8_with_offset(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"[config_bsp]\nqb_mem = -m 512\n\xff\xfe\x00binary")
    err = error_of(path)
    assert "not UTF-8" in str(err) and "offset 29" in str(err) and err.line == 3


def test_yaml_with_an_invalid_byte_in_a_value(tmp_path: Path) -> None:
    path = yaml_target(tmp_path, GOOD_YAML)
    path.write_bytes(path.read_bytes().replace(b"debian-xen", b"debian-\xe9xen"))
    err = error_of(path)
    assert "not UTF-8" in str(err) and err.line == 1


@pytest.mark.parametrize("name", ["deploy.qemuboot.conf", "target.yaml", "folder"])
def test_directory_is_a_directory(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.mkdir()
    assert "is a directory" in str(error_of(path))


@pytest.mark.parametrize("old, new, key, expected", [
    ('  bootargs: "console=hvc0 root=/dev/vda rw quiet"', "  bootargs: [console=hvc0, root=/dev/vda]",
     "dom0.bootargs", "expected a string, got a list"),
    ("name: debian-xen", "name: {a: 1}", "name", "expected a string, got a mapping"),
    ('xen_cmdline: "dom0_mem=384M,max:384M bootscrub=0 console=dtuart"', "xen_cmdline: 42",
     "xen_cmdline", "expected a string, got a number"),
    ("kernel: img/xen", "kernel: [img/xen]", "kernel", "expected a string, got a list"),
    ("  kernel: img/vmlinuz", "  kernel: 7", "dom0.kernel", "expected a string, got a number"),
    ("rootfs: img/dom0.ext4", "rootfs: true", "rootfs", "expected a string, got true/false"),
    ("smp: 2", "smp: 2.5", "smp", "expected a whole number"),
    ("memory: 1G", "memory: [1G]", "memory", "expected a size"),
    ('extra_args: ["-device", "virtio-rng-device"]', 'extra_args: ["-device", 5]', "extra_args",
     "expected a list of strings"),
    ('extra_args: ["-device", "virtio-rng-device"]', "extra_args: {a: b}", "extra_args",
     "expected a list of strings"),
    ("name: debian-xen", "name: debian-xen\ncpu: [cortex-a57]", "cpu", "expected a string, got a list"),
    ("name: debian-xen", "name: debian-xen\nnetwork: yes please", "network", "expected true or false"),
    ("  initrd: img/initrd.gz", "  initrd: img/initrd.gz\n  kernel_addr: [1]", "dom0.kernel_addr",
     "expected an address"),
])
def test_every_yaml_field_is_type_checked(tmp_path: Path, old: str, new: str, key: str, expected: str) -> None:
    assert old in GOOD_YAML
    err = error_of(yaml_target(tmp_path, GOOD_YAML.replace(old, new)))
    assert err.key == key and expected in str(err), str(err)
    assert err.line is not None


@pytest.mark.parametrize("text, key, line", [
    (GOOD_YAML + "memory: 2G\n", "memory", 12),
    (GOOD_YAML.replace("  initrd: img/initrd.gz", "  initrd: img/initrd.gz\n  kernel: img/xen"), "dom0.kernel", 8),
])
def test_duplicate_yaml_keys_are_errors(tmp_path: Path, text: str, key: str, line: int) -> None:
    err = error_of(yaml_target(tmp_path, text))
    assert err.key == key and "duplicate" in str(err) and err.line == line, str(err)


def test_duplicate_qemuboot_keys_are_errors(oe_deploy: Path) -> None:
    conf = (oe_deploy / "xen-image-minimal-qemuarm64.rootfs.qemuboot.conf").resolve()
    conf.write_text(OE_QEMUBOOT + "qb_mem = -m 2048\n")
    err = error_of(conf)
    assert "DuplicateOptionError" in str(err) and err.line == OE_QEMUBOOT.count("\n") + 1


def test_qemuboot_read_with_runqemu_interpolation(oe_deploy: Path) -> None:
    conf = (oe_deploy / "xen-image-minimal-qemuarm64.rootfs.qemuboot.conf").resolve()
    conf.write_text(OE_QEMUBOOT.replace("qb_cpu = -cpu cortex-a57", "qb_cpu = -cpu %(machine)s"))
    assert load_target(conf).cpu_args == ["-cpu", "qemuarm64"]
    conf.write_text(OE_QEMUBOOT.replace("qb_cpu = -cpu cortex-a57", "qb_cpu = -cpu 50%"))
    err = error_of(conf)
    assert err.key == "QB_CPU" and "'%%'" in str(err)
