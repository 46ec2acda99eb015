"""Generated start-up scripts: order of dom0's start-up, shell syntax, the initrd's /init."""

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from xenreftarget import initscripts


def _position(text: str, needle: str) -> int:
    index = text.find(needle)
    assert index >= 0, f"{needle!r} missing from script"
    return index


@pytest.mark.parametrize("script", [initscripts.guest_rcs(), initscripts.guest_rck(),
                                    initscripts.udhcpc_script(), initscripts.initrd_init(["a.ko"])])
def test_scripts_parse_as_posix_shell(script, tmp_path):
    path = tmp_path / "script"
    path.write_text(script)
    for shell in ("sh", "busybox"):
        if shutil.which(shell):
            argv = [shell, "sh", "-n", str(path)] if shell == "busybox" else [shell, "-n", str(path)]
            result = subprocess.run(argv, check=False, capture_output=True, text=True)
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


def test_guest_shutdown_leaves_its_marker_before_unmounting():
    rck = initscripts.guest_rck()
    marker = initscripts.SHUTDOWN_MARKER
    assert _position(rck, f"> {marker}.new") < _position(rck, f"mv {marker}.new {marker}") \
        < _position(rck, "sync") < _position(rck, "umount -a -r")


def test_guest_shutdown_marker_written_by_rck_is_read_back(tmp_path):
    """The marker part of rcK, run on the build host with the marker in a temporary folder."""
    rck = initscripts.guest_rck()
    part = rck[rck.index("{"):rck.index("sync")]
    part = part.replace(initscripts.SHUTDOWN_MARKER, str(tmp_path / "marker"))
    before = int(time.time())
    subprocess.run(["sh", "-c", part], check=True)
    fields = initscripts.parse_shutdown_marker((tmp_path / "marker").read_text())
    assert fields["event"] == "shutdown"
    assert fields["boot_id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert before <= int(fields["time"]) <= time.time() + 1
    assert fields["name"] and float(fields["uptime"]) > 0
    assert not (tmp_path / "marker.new").exists()


@pytest.mark.parametrize("text", ["", "event=shutdown\nname=g\n", "event=boot\nname=g\nboot_id=x\ntime=1\n",
                                  "garbage"])
def test_incomplete_shutdown_markers_are_refused(text):
    with pytest.raises(ValueError, match="not a complete shutdown marker"):
        initscripts.parse_shutdown_marker(text)


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
