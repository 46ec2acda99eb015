"""Run one QEMU instance for a target: private run dir, unix sockets, clean stop, no leftovers.

:class:`QemuMachine` is a context manager::

    with QemuMachine(load_target(path)) as machine:
        shell = machine.boot()            # phases, login; returns machine.console
        status, output = shell.run("xl list")

The machine is the *driver* (in labgrid's sense): it owns QEMU's process, its QMP connection
(:mod:`xenqemu.qmp`) and the serial console.  How the host gets to a shell is a *strategy*:
:class:`~xenqemu.boot.ColdBoot` (boot phases, login, protocol set-up) or
:class:`~xenqemu.warm.WarmStart` (restore a snapshot, re-attach, set the clock; it falls back to
a cold boot).  What the machine guarantees:

* A private run directory per run (``tempfile.mkdtemp`` under a base directory), holding the QMP
  and serial unix sockets (never a TCP port), ``serial.log`` (raw, written by QEMU's chardev),
  ``console.log`` (what the harness read), ``qmp-events.jsonl``, ``transcript.jsonl``/``.log``,
  ``qemu-cmdline.txt``, ``qemu-stderr.log`` and ``watchdog.log``.  Two runs never share anything.
* QEMU starts paused (``-S``); the harness connects the serial socket and QMP (one client at a
  time on a QMP socket) before ``cont``, so no byte of the boot is lost.
* Stop: ``poweroff -f`` in dom0 (QMP ``system_powerdown`` does nothing under Xen with busybox),
  then QMP ``quit``, then SIGTERM, then SIGKILL.  Also on exceptions and Ctrl-C (``__exit__``).
  QEMU runs in its own session; a watchdog process holding a pidfd of QEMU and a pipe from this
  process kills QEMU when this process dies in any way, SIGKILL included.
* QEMU dying is noticed while waiting on the console: :class:`QemuDied` quotes QEMU's stderr and
  the serial log's last lines.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO, Any, Callable

import pexpect.fdpexpect

from .boot import (
    BootError,
    BootTimeouts,
    ColdBoot,
    PhaseResult,
    ProgressCallback,
    serial_tail,
)
from .cmdline import RunPaths, build_argv, format_argv
from .console import ConsoleChannel, ConsoleError, ConsoleStream, Transcript
from .errors import MachineError, QemuDied
from .options import LaunchOptions, MachineOptions, WarmOptions
from .qmp import QmpThread
from .snapshots import Snapshot, SnapshotCache
from .target import Target
from .warm import WarmStart, WarmStartWarning, first_line, warm_options

__all__ = [
    "BootError",
    "BootTimeouts",
    "LaunchOptions",
    "MachineError",
    "MachineOptions",
    "QemuDied",
    "QemuMachine",
    "WarmStartWarning",
    "default_run_base",
]

_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin
_DEFAULT_TIMEOUTS = BootTimeouts()


def default_run_base() -> Path:
    """Base folder of run dirs: ``$XENQEMU_RUN_BASE`` or ``<tmp>/xenqemu-runs``."""
    return Path(os.environ.get("XENQEMU_RUN_BASE") or Path(tempfile.gettempdir()) / "xenqemu-runs")


def _new_run_dir(target: Target, run_dir: os.PathLike[str] | str | None,
                 base_dir: os.PathLike[str] | str | None) -> Path:
    """The run directory: ``run_dir`` (created, must be unused) or a fresh one under the base."""
    if run_dir is None:
        base = Path(base_dir) if base_dir is not None else default_run_base()
        base.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in target.name)[:40] or "run"
        return Path(tempfile.mkdtemp(prefix=f"{safe}-{time.strftime('%Y%m%d-%H%M%S')}-", dir=base))
    path = Path(run_dir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    if (path / "qemu-cmdline.txt").exists():
        raise MachineError(f"{path} already holds a run; give a new run directory "
                           "(or none, for a fresh one under the base directory)")
    return path


class QemuMachine:
    """One QEMU run of ``target`` (see the module docstring).

    ``run_dir`` is the exact run directory (created; must not hold an earlier run); by default a
    fresh one under ``base_dir`` (default :func:`default_run_base`).  ``hostfwd`` entries such as
    ``"2222:22"`` are forwarded on 127.0.0.1 only.  ``progress(phase, description, seconds)`` is
    called as boot phases complete.  The keywords are kept in :attr:`options`
    (:class:`~xenqemu.options.MachineOptions`); :meth:`from_options` takes them as values.

    ``warm=True`` starts from a snapshot in ``snapshot_cache`` (a folder or a
    :class:`SnapshotCache`; default :func:`xenqemu.warm.default_snapshot_cache`), building it
    first when missing or when ``rebuild_snapshot``.  ``warn(message)`` reports why a snapshot
    was not used (default: ``warnings.warn`` with :class:`WarmStartWarning`).  After ``boot()``,
    ``warm_result`` says what happened: ``"restored"``, ``"built+restored"``, ``"cold"``
    (fallback) or None (not warm).  ``rootfs_overlay``/``loadvm`` put the root filesystem on a
    writable qcow2 overlay and restore a snapshot from it (what warm start uses).
    """

    def __init__(self, target: Target, run_dir: os.PathLike[str] | str | None = None,
                 timeouts: BootTimeouts = _DEFAULT_TIMEOUTS, *, base_dir: os.PathLike[str] | str | None = None,
                 snapshot: bool = True, hostfwd: Sequence[str] = (), extra_args: Sequence[str] = (),
                 xen_cmdline_extra: str = "", qemu_binary: str | None = None, user: str = "root",
                 password: str | None = None, progress: ProgressCallback | None = None,
                 command_timeout: float = 300.0, warm: bool = False,
                 snapshot_cache: SnapshotCache | os.PathLike[str] | str | None = None,
                 rebuild_snapshot: bool = False, warn: Callable[[str], None] | None = None,
                 rootfs_overlay: Path | None = None, loadvm: str | None = None) -> None:
        launch = LaunchOptions.of(hostfwd, extra_args, xen_cmdline_extra, qemu_binary)
        options = MachineOptions(launch, timeouts, snapshot, user, password, progress, command_timeout,
                                 rootfs_overlay, loadvm)
        self._setup(target, options, warm_options(warm, snapshot_cache, rebuild_snapshot, warn), run_dir, base_dir)

    @classmethod
    def from_options(cls, target: Target, options: MachineOptions, *, run_dir: os.PathLike[str] | str | None = None,
                     base_dir: os.PathLike[str] | str | None = None, warm: WarmOptions | None = None) -> QemuMachine:
        """A machine configured by option values instead of keywords."""
        machine = cls.__new__(cls)
        machine._setup(target, options, warm, run_dir, base_dir)
        return machine

    def _setup(self, target: Target, options: MachineOptions, warm: WarmOptions | None,
               run_dir: os.PathLike[str] | str | None, base_dir: os.PathLike[str] | str | None) -> None:
        self.target = target
        self.options = options
        self.run_dir = _new_run_dir(target, run_dir, base_dir)
        self._socket_dir: Path | None = None
        if len(str(self.run_dir / "serial.sock")) > _SOCKET_PATH_MAX:
            # unix socket paths are limited to 108 bytes: sockets go to a short private folder,
            # linked from the run dir
            self._socket_dir = Path(tempfile.mkdtemp(prefix="xq-", dir="/tmp"))
        self.paths = RunPaths.in_dir(self.run_dir, self._socket_dir)
        self.argv: list[str] = []
        self.use_drive(options.rootfs_overlay, options.loadvm)
        self.warm_start = WarmStart(self, warm) if warm is not None else None
        self._warm_prepared = False
        self.process: subprocess.Popen[bytes] | None = None
        self.watchdog: subprocess.Popen[bytes] | None = None
        self._watchdog_pipe: int | None = None
        self._pidfd: int | None = None
        self._serial_sock: socket.socket | None = None
        self._qmp: QmpThread | None = None
        self._console_log: IO[bytes] | None = None
        self.stream: ConsoleStream | None = None
        self.console: ConsoleChannel | None = None
        self.transcript: Transcript | None = None
        self.phases: list[PhaseResult] = []
        self.started_at: float | None = None
        self._stopped = False
        #: what the machine is doing, for the message when QEMU dies
        self.activity = "starting"

    # ------------------------------------------------------------------ options, as before

    @property
    def timeouts(self) -> BootTimeouts:
        """Boot phase timeouts."""
        return self.options.timeouts

    @property
    def user(self) -> str:
        """The login user."""
        return self.options.user

    @property
    def password(self) -> str | None:
        """The login password (None: empty)."""
        return self.options.password

    @property
    def progress(self) -> ProgressCallback | None:
        """Called as boot phases complete."""
        return self.options.progress

    @property
    def command_timeout(self) -> float:
        """Default timeout of a console command."""
        return self.options.command_timeout

    @property
    def warm(self) -> bool:
        """True when the machine starts from a snapshot (when it can)."""
        return self.warm_start is not None

    @property
    def snapshot_cache(self) -> SnapshotCache | None:
        """The warm-start snapshot cache (None when not warm)."""
        return self.warm_start.options.cache if self.warm_start is not None else None

    @property
    def rebuild_snapshot(self) -> bool:
        """True when a warm start rebuilds its snapshot first."""
        return self.warm_start is not None and self.warm_start.options.rebuild

    @property
    def warm_result(self) -> str | None:
        """``"restored"``, ``"built+restored"``, ``"cold"`` (fallback) or None (not warm)."""
        return self.warm_start.result if self.warm_start is not None else None

    @property
    def warm_snapshot(self) -> Snapshot | None:
        """The snapshot this session restores (None when cold)."""
        return self.warm_start.snapshot if self.warm_start is not None else None

    @property
    def pid(self) -> int | None:
        """QEMU's process id (None before start)."""
        return self.process.pid if self.process else None

    # ------------------------------------------------------------------ what strategies use

    def use_drive(self, rootfs_overlay: Path | None = None, loadvm: str | None = None) -> None:
        """Build the argv with the root filesystem as the options say, or on ``rootfs_overlay``."""
        launch = self.options.launch
        self.argv = build_argv(self.target, self.paths, snapshot=self.options.snapshot and rootfs_overlay is None,
                               hostfwd=launch.hostfwd, extra_args=launch.extra_args,
                               xen_cmdline_extra=launch.xen_cmdline_extra, qemu_binary=launch.qemu_binary,
                               rootfs_overlay=rootfs_overlay, loadvm=loadvm)

    def builder(self, run_dir: Path, overlay: Path) -> QemuMachine:
        """A cold machine like this one on a writable ``overlay`` (to save a snapshot from)."""
        outer = self.options.progress

        def progress(phase: str, description: str, elapsed: float) -> None:
            if outer is not None:
                outer("snapshot_" + phase, f"snapshot build: {description}", elapsed)

        options = replace(self.options, progress=progress, rootfs_overlay=overlay, loadvm=None, snapshot=False)
        return QemuMachine.from_options(self.target, options, run_dir=run_dir)

    def record_phase(self, result: PhaseResult, first: bool = False) -> None:
        """Add a completed boot phase (``first`` starts the list) and report its progress."""
        self.phases = [result] if first else self.phases + [result]
        if self.options.progress is not None:
            self.options.progress(result.name, result.description, result.elapsed)

    def discard_run(self, archive: Path, logs: Sequence[str]) -> None:
        """Stop QEMU, release everything, move ``logs`` into ``archive``; the machine can start again."""
        if self.console is not None:
            self.console.ready = False
        if self.process is not None:
            try:
                self._stop_qemu()
            finally:
                self._release()
        self.process = None
        self.watchdog = None
        self._stopped = False
        archive.mkdir(exist_ok=True)
        for name in logs:
            if (self.run_dir / name).exists():
                os.replace(self.run_dir / name, archive / name)

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> QemuMachine:  # noqa: PYI034  (Python 3.9: no typing.Self)
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _restoring(self) -> bool:
        return self.warm_start is not None and self.warm_start.snapshot is not None

    def start(self) -> None:
        """Start QEMU paused, connect the serial console and QMP. Idempotent.

        In warm mode this first finds (or builds) the snapshot and copies its overlay; when
        QEMU cannot load the snapshot the machine is started again for a cold boot.
        """
        if self.process is not None:
            return
        if self.warm_start is not None and not self._warm_prepared:
            self._warm_prepared = True
            self.warm_start.prepare()
        try:
            self._launch()
        except QemuDied as err:
            if self.warm_start is None or not self._restoring():
                raise
            self.warm_start.fall_back(f"QEMU could not restore the snapshot: {first_line(str(err), 'QEMU stderr:')}")
            self._launch()

    def boot(self) -> ConsoleChannel:
        """Start (if needed) and bring the host to a logged-in shell; return the console.

        Warm: restore the snapshot (a cold boot if that fails).  Cold: ``cont``, every boot
        phase, login.  Raises :class:`BootError` naming the phase that did not complete, or
        :class:`QemuDied`.
        """
        self.start()
        if self.warm_start is not None and self._restoring():
            try:
                return self.warm_start.restore()
            except (ConsoleError, BootError, MachineError) as err:
                self.warm_start.fall_back(f"the restored machine did not answer: {first_line(str(err))}")
                self._launch()
        return ColdBoot().run(self)

    def resume(self) -> None:
        """Let the paused CPUs run (QMP ``cont``)."""
        self.start()
        self.qmp("cont")

    # ------------------------------------------------------------------ launch

    def _launch(self) -> None:
        if self._socket_dir is not None:
            self._socket_dir.mkdir(exist_ok=True)  # removed by _release after a failed warm attempt
        self._spawn_qemu()
        try:
            self._start_watchdog()
            self._link_sockets()
            self._wait_sockets(timeout=30.0)
            self._connect_serial()
            self._qmp = QmpThread(self.paths.qmp_socket, self.run_dir / "qmp-events.jsonl")
            self._qmp.connect()
            self.activity = "paused before boot"
        except Exception as err:
            # QEMU failing at start-up closes its sockets under us: report its death and stderr
            self.wait_exit(2.0)
            try:
                self.check_alive()
            except QemuDied as died:
                self.stop()
                raise died from err
            self.stop()
            raise
        except BaseException:
            self.stop()
            raise

    def _spawn_qemu(self) -> None:
        (self.run_dir / "qemu-cmdline.txt").write_text(format_argv(self.argv) + "\n", encoding="utf-8")
        if self.target.notes:
            (self.run_dir / "target-notes.txt").write_text("\n".join(self.target.notes) + "\n", encoding="utf-8")
        with open(self.run_dir / "qemu-stderr.log", "wb") as stderr:
            try:
                self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                                                start_new_session=True, close_fds=True, cwd=self.run_dir)
            except FileNotFoundError:
                package = "qemu-system-x86" if "x86" in self.argv[0] else "qemu-system-arm"
                raise MachineError(f"QEMU binary {self.argv[0]!r} not found: install {package} "
                                   f"(Debian) or pass qemu_binary=/path/to/{Path(self.argv[0]).name}") from None
        self.started_at = time.monotonic()

    def _start_watchdog(self) -> None:
        assert self.process is not None
        self._pidfd = os.pidfd_open(self.process.pid)
        read_end, write_end = os.pipe()  # both non-inheritable; only the read end is passed on
        self._watchdog_pipe = write_end
        try:
            # Run as a plain script in isolated mode: ``-m xenqemu._watchdog`` would import the
            # whole package (~80 ms of CPU) while QEMU starts on the same cores.
            self.watchdog = subprocess.Popen(
                [sys.executable, "-I", "-S", str(Path(__file__).resolve().with_name("_watchdog.py")),
                 str(self._pidfd), str(read_end), str(self.process.pid), str(self.run_dir / "watchdog.log")],
                pass_fds=(self._pidfd, read_end), start_new_session=True, stdin=subprocess.DEVNULL)
        finally:
            os.close(read_end)

    def _link_sockets(self) -> None:
        if self._socket_dir is not None:
            for name in ("qmp.sock", "serial.sock"):
                link = self.run_dir / name
                if not link.is_symlink():  # (dangling after a failed warm attempt: kept)
                    link.symlink_to(self._socket_dir / name)

    def _wait_sockets(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        while not (self.paths.qmp_socket.exists() and self.paths.serial_socket.exists()):
            self.check_alive()
            if time.monotonic() > end:
                raise MachineError(f"QEMU did not create its sockets within {timeout:.0f}s; "
                                   f"see {self.run_dir}/qemu-stderr.log")
            time.sleep(0.01)
        self.check_alive()

    def _connect_serial(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(self.paths.serial_socket))
        self._serial_sock = sock
        self._console_log = open(self.run_dir / "console.log", "ab")  # noqa: SIM115  (closed by _release)
        spawn = pexpect.fdpexpect.fdspawn(sock.fileno(), timeout=30)
        spawn.logfile_read = self._console_log
        self.stream = ConsoleStream(spawn, liveness=self.check_alive)
        self.transcript = Transcript(self.run_dir)
        self.console = ConsoleChannel(self.stream, name="dom0", transcript=self.transcript,
                                      default_timeout=self.options.command_timeout)

    # ------------------------------------------------------------------ health

    def stderr_text(self, limit: int = 4000) -> str:
        """QEMU's stderr so far (the last ``limit`` characters)."""
        path = self.run_dir / "qemu-stderr.log"
        return path.read_text(encoding="utf-8", errors="replace")[-limit:] if path.exists() else ""

    def check_alive(self) -> None:
        """Raise :class:`QemuDied` (with stderr and serial tail) if QEMU has exited."""
        if self.process is None or self._stopped:
            return
        code = self.process.poll()
        if code is None:
            return
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"status {code}"
        raise QemuDied(f"QEMU exited with {how} while {self.activity}.\n"
                       f"QEMU stderr:\n{self.stderr_text().strip() or '(empty)'}\n"
                       f"Last lines of the serial log:\n{serial_tail(self.paths.serial_log)}\n"
                       f"Run directory: {self.run_dir}")

    def qmp(self, command: str, arguments: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
        """Execute a QMP command (``query-status``, ``stop``, ...) and return its result."""
        if self._qmp is None:
            raise MachineError("QMP is not connected (machine not started)")
        self.check_alive()
        return self._qmp.execute(command, arguments, timeout)

    def status(self) -> str:
        """QEMU's run state from ``query-status`` (e.g. ``running``, ``paused``)."""
        return str(self.qmp("query-status").get("status"))

    # ------------------------------------------------------------------ stop

    def stop(self) -> int | None:
        """Stop QEMU (poweroff, QMP quit, SIGTERM, SIGKILL) and release everything; return its status."""
        if self._stopped:
            return self.process.returncode if self.process else None
        self.activity = "stopping"
        code: int | None = None
        try:
            code = self._stop_qemu()
        except BaseException:
            self._kill_hard()
            raise
        finally:
            self._stopped = True
            self._release()
        return code

    def wait_exit(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for QEMU to exit; True if it did."""
        assert self.process is not None
        try:
            self.process.wait(timeout=seconds)
            return True
        except subprocess.TimeoutExpired:
            return False

    def _stop_qemu(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None and self.console is not None and self.console.ready:
            # the console may be dead or stuck: QMP quit comes next anyway
            with contextlib.suppress(ConsoleError, MachineError, OSError):
                self.console.start("poweroff -f")
            self.wait_exit(self.options.timeouts.poweroff)
        if self.process.poll() is None and self._qmp is not None:
            # QEMU may close the socket before answering; whatever the client raises, SIGTERM follows
            with contextlib.suppress(Exception):
                self._qmp.execute("quit", timeout=5.0)
            self.wait_exit(10.0)
        if self.process.poll() is None:
            self.process.terminate()
            if not self.wait_exit(5.0):
                self._kill_hard()
        return self.process.returncode

    def _kill_hard(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.kill()
            self.process.wait()

    def _release(self) -> None:
        if self._qmp is not None:
            self._qmp.close()
            self._qmp = None
        if self._serial_sock is not None:
            self._serial_sock.close()
            self._serial_sock = None
        if self._console_log is not None:
            self._console_log.close()
            self._console_log = None
        if self.transcript is not None:
            self.transcript.close()
        self._release_watchdog()
        self._remove_sockets()
        if self.warm_start is not None and self._stopped:
            self.warm_start.discard_overlay()

    def _release_watchdog(self) -> None:
        if self._watchdog_pipe is not None:
            os.close(self._watchdog_pipe)  # the watchdog sees EOF, finds QEMU gone, exits
            self._watchdog_pipe = None
        if self.watchdog is not None:
            try:
                self.watchdog.wait(timeout=20.0)
            except subprocess.TimeoutExpired:
                self.watchdog.kill()
                self.watchdog.wait()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def _remove_sockets(self) -> None:
        if self._socket_dir is not None:
            for name in ("qmp.sock", "serial.sock"):
                with contextlib.suppress(FileNotFoundError):
                    (self._socket_dir / name).unlink()
            with contextlib.suppress(OSError):
                self._socket_dir.rmdir()
