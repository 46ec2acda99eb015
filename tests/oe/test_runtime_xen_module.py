"""The runtime suite's serial-console adapter and parsing helpers (lib/oeqa/runtime/cases/xen.py).

The module is imported as testimage imports it (oe-core's meta/lib on sys.path, see conftest.py).
The adapter is exercised against a real shell behind a socket pair, standing in for the Xen
console behind QemuRunner's serial socket: a fake runner object has exactly the attributes of
oe-core's QemuRunner that the adapter touches (server_socket, thread.serial_lock, log(),
is_alive(), boot_patterns).
"""
from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.oecore

LAYER = Path(__file__).resolve().parents[2]
LOGIN_PROMPT = "root@qemuarm64:~# "


@pytest.fixture(scope="module")
def xen_module(oeqa_on_path: Path):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("xen", LAYER / "lib/oeqa/runtime/cases/xen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeRunner:
    """The parts of oe-core's QemuRunner the adapter uses, over one end of a socket pair."""

    def __init__(self, sock: socket.socket) -> None:
        self.server_socket = sock
        self.thread = SimpleNamespace(serial_lock=threading.Lock())
        self.logged: list[tuple[bytes, str]] = []
        self.boot_patterns = {"search_cmd_finished": r"[a-zA-Z0-9]+@[a-zA-Z0-9\-]+:~#"}
        self.alive = True

    def log(self, msg: bytes, extension: str = "") -> None:
        self.logged.append((msg, extension))

    def is_alive(self) -> bool:
        return self.alive


def _pump(master: int, sock: socket.socket, stop: threading.Event) -> None:
    """Copy bytes between the shell's terminal and the socket (like QEMU's serial chardev)."""
    import select
    while not stop.is_set():
        ready, _, _ = select.select([master, sock], [], [], 0.1)
        try:
            if master in ready:
                sock.sendall(os.read(master, 4096))
            if sock in ready:
                data = sock.recv(4096)
                if not data:
                    return
                os.write(master, data)
        except OSError:
            return


@pytest.fixture
def runner() -> Iterator[FakeRunner]:
    """A login shell on a terminal (echo on, as on a serial console) behind a socket pair."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)  # QemuRunner's serial socket is non-blocking too
    master, slave = os.openpty()
    env = dict(os.environ, PS1=LOGIN_PROMPT, ENV="", TERM="dumb")
    shell = subprocess.Popen(["sh", "-i"], stdin=slave, stdout=slave, stderr=slave, env=env,
                             start_new_session=True)
    os.close(slave)
    stop = threading.Event()
    pump = threading.Thread(target=_pump, args=(master, theirs, stop), daemon=True)
    pump.start()
    fake = FakeRunner(ours)
    yield fake
    shell.kill()
    shell.wait()
    stop.set()
    pump.join()
    for closing in (ours, theirs):
        closing.close()
    os.close(master)


def read_available(sock: socket.socket, until: bytes, limit: float = 10.0) -> bytes:
    import select
    import time
    data = b""
    end = time.monotonic() + limit
    while until not in data and time.monotonic() < end:
        ready, _, _ = select.select([sock], [], [], 0.2)
        if ready:
            data += sock.recv(4096)
    return data


def test_commands_run_with_their_real_status(xen_module, runner: FakeRunner) -> None:
    with xen_module.runner_serial_console(runner, timeout=30) as shell:
        assert runner.thread.serial_lock.locked(), "the LoggingThread must be kept off the socket"
        status, output = shell.run("echo dom0-$((40 + 2))", timeout=30)
        assert (status, output.strip()) == (0, "dom0-42")
        status, _ = shell.run("false", timeout=30)
        assert status == 1, "status is the command's, not run_serial's inverted flag"
        shell.run("cd /", timeout=30)
    assert not runner.thread.serial_lock.locked()


def test_runner_socket_and_login_shell_survive_the_session(xen_module, runner: FakeRunner) -> None:
    with xen_module.runner_serial_console(runner, timeout=30) as shell:
        shell.run("cd / && PS1='changed> '", timeout=30)  # only the child shell is changed
    runner.server_socket.sendall(b"pwd; echo ALIVE-$((1+1))\n")
    data = read_available(runner.server_socket, b"ALIVE-2")
    assert b"ALIVE-2" in data, "the runner's socket must stay open and usable"
    assert b"changed>" not in data
    assert runner.server_socket.fileno() >= 0


def test_console_traffic_goes_to_the_runner_log(xen_module, runner: FakeRunner) -> None:
    with xen_module.runner_serial_console(runner, timeout=30) as shell:
        shell.run("echo logged-$((6 * 7))", timeout=30)
    logged = b"".join(msg for msg, _ in runner.logged)
    assert b"logged-42" in logged
    assert {extension for _, extension in runner.logged} == {".2"}


def test_failure_inside_the_session_still_returns_to_the_login_shell(xen_module, runner: FakeRunner) -> None:
    with pytest.raises(AssertionError), xen_module.runner_serial_console(runner, timeout=30) as shell:
        shell.run("true", timeout=30)
        raise AssertionError("a failed check")
    assert not runner.thread.serial_lock.locked()
    runner.server_socket.sendall(b"echo BACK-$((2+3))\n")
    assert b"BACK-5" in read_available(runner.server_socket, b"BACK-5")


def test_a_runner_without_console_is_reported(xen_module) -> None:
    with pytest.raises(RuntimeError, match="no logged-in serial console"), \
            xen_module.runner_serial_console(SimpleNamespace(server_socket=None, thread=None)):
        pass


def test_lifecycle_steps_run_through_the_adapter(xen_module, runner: FakeRunner, tmp_path: Path) -> None:
    """The suite's cases run the harness's lifecycle steps over the runner's console (shared, not copied)."""
    (tmp_path / "xen-guest-bundle-a.cfg").write_text('name = "a"\n')
    (tmp_path / "xen-guest-bundle-b.cfg").write_text('name = "b"\n')
    plan = xen_module.LifecyclePlan(xen_module.host_steps("guest configs"), ())
    with xen_module.runner_serial_console(runner, timeout=30) as shell:
        report = xen_module.run_lifecycle(shell, xen_module.lifecycle_options(
            config_glob=f"{tmp_path}/xen-guest-bundle*.cfg"), plan)
        assert report.ok, report.summary()
        assert report.results[0].detail == f"{tmp_path}/xen-guest-bundle-a.cfg, {tmp_path}/xen-guest-bundle-b.cfg"
        empty = xen_module.run_lifecycle(shell, xen_module.lifecycle_options(
            config_glob=f"{tmp_path}/none*.cfg"), plan)
    assert not empty.ok and "nothing matches" in empty.results[0].detail
    assert not runner.thread.serial_lock.locked()


def test_the_suite_takes_host_steps_by_name(xen_module) -> None:
    assert [s.name for s in xen_module.host_steps("dom0", "toolstack")] == ["toolstack", "dom0"]
    with pytest.raises(ValueError, match="no host step named nope"):
        xen_module.host_steps("nope")
    options = xen_module.lifecycle_options(network=False)
    assert options.config_glob == "/etc/xen/xen-guest-bundle*.cfg" and not options.network
