"""Process hygiene with a real QEMU: no leftover process, clear errors, private run dirs.

The machine is a real qemu-system-aarch64 ``virt`` machine without a kernel, started paused
through the same QemuMachine machinery as a Xen boot (no Xen needed for these properties).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from xenqemu.machine import MachineError, QemuDied, QemuMachine
from xenqemu.target import Target

pytestmark = pytest.mark.slow

LIB = str(Path(__file__).resolve().parents[2] / "lib")


def bare_target(**changes: object) -> Target:
    target = Target(source=Path(__file__), kind="yaml", name="bare", memory_mib=128)
    for key, value in changes.items():
        setattr(target, key, value)
    return target


def gone(pid: int, within: float = 60.0) -> bool:
    """True once ``pid`` no longer exists (or is a zombie nobody waits for)."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.2)
    return False


def test_machine_runs_paused_with_private_sockets(tmp_path: Path) -> None:
    with QemuMachine(bare_target(), base_dir=tmp_path) as machine:
        assert machine.status() == "prelaunch"
        assert machine.paths.qmp_socket.is_socket() and machine.paths.serial_socket.is_socket()
        assert machine.run_dir.parent == tmp_path
        pid = machine.pid
        assert pid is not None
    assert gone(pid)
    assert (machine.run_dir / "qemu-cmdline.txt").read_text().startswith("qemu-system-aarch64")
    assert '"command": "query-status"' in (machine.run_dir / "qmp-events.jsonl").read_text()


def test_two_machines_at_once_do_not_collide(tmp_path: Path) -> None:
    with QemuMachine(bare_target(), base_dir=tmp_path) as first, \
            QemuMachine(bare_target(), base_dir=tmp_path) as second:
        assert first.run_dir != second.run_dir
        assert first.paths.serial_socket != second.paths.serial_socket
        assert first.paths.qmp_socket != second.paths.qmp_socket
        assert first.status() == second.status() == "prelaunch"
        pids = [first.pid, second.pid]
    assert all(gone(pid) for pid in pids if pid)


def test_kill_qemu_mid_command_gives_clear_error(tmp_path: Path) -> None:
    with QemuMachine(bare_target(), base_dir=tmp_path) as machine:
        assert machine.console is not None
        machine.console.ready = True  # pretend a shell is logged in: run() then waits for markers
        pid = machine.pid
        assert pid is not None
        threading.Timer(1.0, os.kill, (pid, signal.SIGKILL)).start()
        with pytest.raises(QemuDied) as info:
            machine.console.run("sleep 1000", timeout=3600)  # only QEMU's death can end this
    message = str(info.value)
    assert "QEMU exited with signal SIGKILL" in message and str(machine.run_dir) in message
    assert gone(pid)


def test_exception_in_block_stops_qemu(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="test failure"), QemuMachine(bare_target(), base_dir=tmp_path) as machine:
        pid = machine.pid
        raise RuntimeError("test failure")
    assert pid is not None and gone(pid)


def test_early_qemu_death_quotes_stderr(tmp_path: Path) -> None:
    machine = QemuMachine(bare_target(extra_args=["-device", "no-such-device-xq"]), base_dir=tmp_path)
    with pytest.raises(MachineError) as info:
        machine.start()
    assert "no-such-device-xq" in str(info.value) and "QEMU stderr" in str(info.value)
    assert machine.pid is not None and gone(machine.pid)


def test_missing_qemu_binary_is_explained(tmp_path: Path) -> None:
    machine = QemuMachine(bare_target(), base_dir=tmp_path, qemu_binary="/nonexistent/qemu-system-aarch64")
    with pytest.raises(MachineError, match="not found: install qemu-system-arm"):
        machine.start()


def test_long_run_dir_gets_short_sockets(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    with QemuMachine(bare_target(), run_dir=deep) as machine:
        assert machine.run_dir == deep.resolve()
        assert len(str(machine.paths.serial_socket)) < 100
        assert (deep / "serial.sock").is_symlink()
        assert machine.status() == "prelaunch"
    assert not machine.paths.serial_socket.exists()


def test_run_dir_is_never_reused(tmp_path: Path) -> None:
    with QemuMachine(bare_target(), run_dir=tmp_path / "run"):
        pass
    with pytest.raises(MachineError, match="already holds a run"):
        QemuMachine(bare_target(), run_dir=tmp_path / "run")


SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {lib!r})
    from pathlib import Path
    from xenqemu.machine import QemuMachine
    from xenqemu.target import Target
    target = Target(source=Path("x"), kind="yaml", name="bare", memory_mib=128)
    with QemuMachine(target, base_dir={base!r}) as machine:
        print(machine.pid, machine.run_dir, flush=True)
        time.sleep(600)
""")


def start_holder(tmp_path: Path) -> tuple[subprocess.Popen[str], int, Path]:
    holder = subprocess.Popen([sys.executable, "-c", SCRIPT.format(lib=LIB, base=str(tmp_path))],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    pid_text, run_dir = holder.stdout.readline().split()
    return holder, int(pid_text), Path(run_dir)


def test_parent_killed_with_sigkill_watchdog_kills_qemu(tmp_path: Path) -> None:
    holder, qemu_pid, run_dir = start_holder(tmp_path)
    assert not gone(qemu_pid, within=0.5)
    holder.kill()  # SIGKILL: no Python cleanup runs
    holder.wait()
    assert gone(qemu_pid), "QEMU survived its parent"
    assert "parent process gone" in (run_dir / "watchdog.log").read_text()


def test_ctrl_c_stops_qemu_cleanly(tmp_path: Path) -> None:
    holder, qemu_pid, run_dir = start_holder(tmp_path)
    holder.send_signal(signal.SIGINT)  # KeyboardInterrupt in the with block
    holder.wait(timeout=120)
    assert gone(qemu_pid)
    assert not (run_dir / "watchdog.log").exists()  # the harness stopped it, not the watchdog
