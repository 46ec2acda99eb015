"""Generated start-up scripts: order of dom0's start-up, shell syntax, the initrd's /init."""

import shutil
import subprocess
from pathlib import Path

import pytest
from xenreftarget import initscripts


def _position(text: str, needle: str) -> int:
    index = text.find(needle)
    assert index >= 0, f"{needle!r} missing from script"
    return index


def test_dom0_start_up_order_follows_the_measured_sequence():
    rcs = initscripts.dom0_rcs()
    steps = ["mount -t proc", "mount -t devtmpfs", "mount -t devpts", "tmpfs /run", "tmpfs /tmp",
             "ln -sfn /proc/self/fd /dev/fd", "/dev/stdin", "mkdir -p /run/lock",
             "insmod", "brctl addbr xenbr0", "brctl addif xenbr0 eth0", "ip link set xenbr0 up",
             "mount -t xenfs xenfs /proc/xen", "XENSTORED_ROOTDIR=/run/xenstored xenstored",
             "xenstore-exists /", "xen-init-dom0", "xenconsoled", "/sys/class/net/xenbr0/carrier",
             "udhcpc -f -i xenbr0", ") </dev/null >/var/log/udhcpc.xenbr0.log 2>&1 &"]
    positions = [_position(rcs, step) for step in steps]
    assert positions == sorted(positions)
    assert f"-s {initscripts.UDHCPC_SCRIPT}" in rcs  # Debian's busybox has no default script


@pytest.mark.parametrize("script", [initscripts.dom0_rcs(), initscripts.dom0_rck(),
                                    initscripts.guest_rcs(), initscripts.guest_rck(),
                                    initscripts.udhcpc_script(), initscripts.initrd_init(["a.ko"])])
def test_scripts_parse_as_posix_shell(script, tmp_path):
    path = tmp_path / "script"
    path.write_text(script)
    for shell in ("sh", "busybox"):
        if shutil.which(shell):
            argv = [shell, "sh", "-n", str(path)] if shell == "busybox" else [shell, "-n", str(path)]
            result = subprocess.run(argv, capture_output=True, text=True)
            assert result.returncode == 0, result.stderr


def test_guest_gets_dhcp_on_eth0_and_retries_in_background():
    rcs = initscripts.guest_rcs()
    assert "udhcpc -i eth0" in rcs and " -b " in rcs
    assert "xenstored" not in rcs


def test_inittab_runs_getty_with_login_on_hvc0_and_rck_on_shutdown():
    tab = initscripts.inittab()
    assert "::sysinit:/etc/init.d/rcS" in tab
    assert "hvc0::respawn:/sbin/getty -L 115200 hvc0" in tab
    assert "::shutdown:/etc/init.d/rcK" in tab


def test_dom0_shutdown_destroys_guests_before_unmounting():
    rck = initscripts.dom0_rck()
    assert _position(rck, "xl destroy") < _position(rck, "umount -a -r")


def test_module_list_is_one_path_per_line():
    assert initscripts.module_list_file(["kernel/a.ko", "kernel/b.ko"]) == "kernel/a.ko\nkernel/b.ko\n"


def _run_init_parsing(tmp_path: Path, cmdline: str) -> str:
    """Run the initrd's command-line parsing part on the host with a fake /proc/cmdline."""
    init = initscripts.initrd_init([])
    start = init.index('root=""; fstype=ext4')
    end = init.index("fail() {")
    snippet = init[start:end].replace("/proc/cmdline", str(tmp_path / "cmdline"))
    (tmp_path / "cmdline").write_text(cmdline + "\n")
    script = snippet + 'echo "$root|$fstype|$mode|$init"\n'
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout.strip()


def test_initrd_reads_root_mode_and_init_from_the_command_line(tmp_path):
    assert _run_init_parsing(tmp_path, "console=hvc0 root=/dev/xvda rw quiet") == "/dev/xvda|ext4|rw|/sbin/init"
    assert _run_init_parsing(tmp_path, "root=/dev/vda ro rootfstype=ext2 init=/bin/sh") == "/dev/vda|ext2|ro|/bin/sh"


def test_initrd_loads_modules_in_the_given_order_then_switches_root():
    init = initscripts.initrd_init(["kernel/fs/jbd2/jbd2.ko", "kernel/fs/ext4/ext4.ko"])
    assert _position(init, "jbd2.ko") < _position(init, "ext4.ko") < _position(init, "switch_root")
    assert "poweroff -f" in init  # a missing root device ends the domain instead of hanging
