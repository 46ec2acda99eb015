"""The QEMU command-line builder."""

from __future__ import annotations

from pathlib import Path

import pytest
from xenqemu.cmdline import RunPaths, build_argv, format_argv, parse_hostfwd
from xenqemu.target import TargetError, load_target
from xq_unit_helpers import GOOD_YAML, yaml_target

RUN = RunPaths.in_dir(Path("/run/x"))


def option_values(argv: list[str], option: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == option]


def test_yaml_target_argv(tmp_path: Path) -> None:
    target = load_target(yaml_target(tmp_path, GOOD_YAML))
    argv = build_argv(target, RUN)
    base = tmp_path.resolve() / "img"
    assert argv[0] == "qemu-system-aarch64"
    assert option_values(argv, "-machine") == ["virt,virtualization=on,gic-version=3"]
    assert option_values(argv, "-kernel") == [str(base / "xen")]
    assert option_values(argv, "-append") == ["dom0_mem=384M,max:384M bootscrub=0 console=dtuart"]
    devices = option_values(argv, "-device")
    # the QB_XEN_* contract's addresses (xenboot): dom0's kernel at 0x49000000, its initrd at 0x4c000000
    assert f"guest-loader,addr=0x49000000,kernel={base / 'vmlinuz'},bootargs=console=hvc0 root=/dev/vda rw quiet" in devices
    assert f"guest-loader,addr=0x4c000000,initrd={base / 'initrd.gz'}" in devices
    assert option_values(argv, "-drive") == [f"if=none,id=rootfs,file={base / 'dom0.ext4'},format=raw,snapshot=on"]
    assert "virtio-blk-device,drive=rootfs" in devices
    assert option_values(argv, "-netdev") == ["user,id=net0"]
    assert "virtio-net-device,netdev=net0,mac=52:54:00:12:35:02" in devices
    assert "virtio-rng-device" in devices
    for flag in ("-no-reboot", "-S"):
        assert flag in argv
    assert option_values(argv, "-display") == ["none"]
    assert option_values(argv, "-monitor") == ["none"]
    assert option_values(argv, "-qmp") == ["unix:/run/x/qmp.sock,server=on,wait=off"]
    assert option_values(argv, "-chardev") == [
        "socket,id=console0,path=/run/x/serial.sock,server=on,wait=off,logfile=/run/x/serial.log"]
    assert option_values(argv, "-serial") == ["chardev:console0"]
    assert not any("tcp:" in a for a in argv)  # never a TCP port


def test_no_snapshot_and_extras(tmp_path: Path) -> None:
    target = load_target(yaml_target(tmp_path, GOOD_YAML))
    argv = build_argv(target, RUN, snapshot=False, hostfwd=["2222:22", "tcp::8080-:80"],
                      xen_cmdline_extra="loglvl=all", extra_args=["-d", "guest_errors"],
                      qemu_binary="/opt/qemu/bin/qemu-system-aarch64")
    assert argv[0] == "/opt/qemu/bin/qemu-system-aarch64"
    assert "snapshot=on" not in option_values(argv, "-drive")[0]
    assert option_values(argv, "-netdev") == [
        "user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=tcp:127.0.0.1:8080-:80"]
    assert option_values(argv, "-append")[0].endswith(" loglvl=all")
    assert argv[-2:] == ["-d", "guest_errors"]


def test_qemuboot_argv_follows_qb_values(oe_deploy: Path) -> None:
    target = load_target(oe_deploy / "xen-image-minimal-qemuarm64.rootfs.qemuboot.conf")
    argv = build_argv(target, RUN)
    deploy = oe_deploy.resolve()
    assert option_values(argv, "-kernel") == [str(deploy / "xen-qemuarm64-4.18+git-r0")]
    assert option_values(argv, "-m") == ["1024"]
    assert option_values(argv, "-smp") == ["4"]
    # QB_ROOTFS_OPT with @ROOTFS@, made read-only for the image by -snapshot
    assert option_values(argv, "-drive") == [
        f"id=disk0,file={deploy / 'xen-image-minimal-qemuarm64.rootfs.ext4'},if=none,format=raw"]
    assert "-snapshot" in argv
    devices = option_values(argv, "-device")
    assert "virtio-blk-device,drive=disk0" in devices
    assert "qemu-xhci" in devices and "virtio-rng-pci,rng=rng0" in devices
    assert f"guest-loader,addr=0x4c000000,initrd={deploy / 'initrd.cpio.gz'}" in devices
    # the harness owns the console: nothing of QB_SERIAL_OPT/QB_TCPSERIAL_OPT/QB_GRAPHICS
    assert "virtconsole,chardev=virtcon" not in devices and "virtio-gpu-pci" not in devices
    assert option_values(argv, "-serial") == ["chardev:console0"]


@pytest.mark.parametrize("spec", ["0.0.0.0:2222-:22", "tcp:192.168.1.5:2222-:22"])
def test_hostfwd_only_on_loopback(spec: str) -> None:
    with pytest.raises(ValueError, match="only 127.0.0.1"):
        parse_hostfwd(spec)


def test_hostfwd_forms() -> None:
    assert parse_hostfwd("2222:22") == "hostfwd=tcp:127.0.0.1:2222-:22"
    assert parse_hostfwd("udp:127.0.0.1:5353-:53") == "hostfwd=udp:127.0.0.1:5353-:53"
    with pytest.raises(ValueError, match="bad port forward"):
        parse_hostfwd("ssh")


def test_harness_owned_options_refused(tmp_path: Path) -> None:
    target = load_target(yaml_target(tmp_path, GOOD_YAML))
    with pytest.raises(TargetError, match="-serial is owned by the harness"):
        build_argv(target, RUN, extra_args=["-serial", "stdio"])


def test_format_argv_is_shell_quoted(tmp_path: Path) -> None:
    target = load_target(yaml_target(tmp_path, GOOD_YAML))
    text = format_argv(build_argv(target, RUN))
    assert "-append 'dom0_mem=384M,max:384M bootscrub=0 console=dtuart'" in text
    assert text.count("\\\n") >= 10
