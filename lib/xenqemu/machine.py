"""Run one QEMU instance for a target: private run dir, unix sockets, clean stop, no leftovers.

:class:`QemuMachine` is a context manager::

    with QemuMachine(load_target(path)) as machine:
        shell = machine.boot()            # phases, login; returns machine.console
        status, output = shell.run("xl list")

What it guarantees:

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
* Warm start (``warm=True``, see :mod:`xenqemu.warm`): the session starts from a saved snapshot
  of the booted host (built by a cold boot the first time, and whenever its key changes) on its
  own copy of the snapshot's overlay; ``boot()`` then resumes it, re-attaches the console and
  sets dom0's clock.  A snapshot that cannot be used gives a :class:`WarmStartWarning` and a
  cold boot.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

import pexpect.fdpexpect

from .boot import (
    BootError,
    BootTimeouts,
    PhaseResult,
    ProgressCallback,
    serial_tail,
    wait_boot_phases,
)
from .cmdline import RunPaths, build_argv, format_argv
from .console import ConsoleChannel, ConsoleError, ConsoleStream, Transcript
from .target import Target
from .warm import (
    SNAPSHOT_NAME,
    Snapshot,
    SnapshotCache,
    SnapshotError,
    WarmStartWarning,
    key_argv,
    snapshot_key,
)

__all__ = [
    "BootError",
    "BootTimeouts",
    "MachineError",
    "QemuDied",
    "QemuMachine",
    "WarmStartWarning",
    "default_run_base",
]

_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin


class MachineError(RuntimeError):
    """QEMU could not be started, reached or stopped; the message says why and where the logs are."""


class QemuDied(MachineError):
    """QEMU exited while the harness still needed it."""


def default_run_base() -> Path:
    """Base folder of run dirs: ``$XENQEMU_RUN_BASE`` or ``<tmp>/xenqemu-runs``."""
    return Path(os.environ.get("XENQEMU_RUN_BASE") or Path(tempfile.gettempdir()) / "xenqemu-runs")


class _QmpThread:
    """A qemu.qmp ``QMPClient`` on its own asyncio loop in a thread; events go to a JSON-lines file."""

    def __init__(self, socket_path: Path, events_file: Path) -> None:
        from qemu.qmp import (
            QMPClient,  # imported here: the rest of the module works without it
        )

        self.socket_path = socket_path
        self.events_file = events_file
        self.loop = asyncio.new_event_loop()
        self.client = QMPClient("xenqemu")
        self._events_task: asyncio.Task[None] | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, name="xenqemu-qmp", daemon=True)
        self.thread.start()

    def _call(self, coro: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def connect(self, timeout: float = 10.0) -> None:
        """Connect, negotiate, and start logging events."""
        self._call(self.client.connect(str(self.socket_path)), timeout)
        self._events_task = self._call(self._spawn_event_logger(), timeout)

    async def _spawn_event_logger(self) -> asyncio.Task[None]:
        return asyncio.ensure_future(self._log_events())

    async def _cancel_event_logger(self) -> None:
        if self._events_task is not None:
            self._events_task.cancel()
            await asyncio.gather(self._events_task, return_exceptions=True)

    async def _log_events(self) -> None:
        with open(self.events_file, "a", encoding="utf-8") as f:
            async for event in self.client.events:
                f.write(json.dumps(dict(event)) + "\n")
                f.flush()

    def execute(self, command: str, arguments: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
        """Run one QMP command and return its result."""
        with open(self.events_file, "a", encoding="utf-8") as f:
            f.write(json.dumps({"command": command, "arguments": arguments or {}, "time": time.time()}) + "\n")
        return self._call(self.client.execute(command, arguments), timeout)

    def close(self) -> None:
        """Disconnect and stop the loop thread."""
        try:
            self._call(self.client.disconnect(), 5.0)
        except Exception:  # already gone with QEMU
            pass
        try:
            self._call(self._cancel_event_logger(), 5.0)
        except Exception:  # the loop may be stuck with a dead QEMU; the thread is a daemon
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5.0)


class QemuMachine:
    """One QEMU run of ``target`` (see the module docstring).

    ``run_dir`` is the exact run directory (created; must not hold an earlier run); by default a
    fresh one under ``base_dir`` (default :func:`default_run_base`).  ``hostfwd`` entries such as
    ``"2222:22"`` are forwarded on 127.0.0.1 only.  ``progress(phase, description, seconds)`` is
    called as boot phases complete.

    ``warm=True`` starts from a snapshot in ``snapshot_cache`` (a folder or a
    :class:`SnapshotCache`; default :func:`xenqemu.warm.default_snapshot_cache`), building it
    first when missing or when ``rebuild_snapshot``.  ``warn(message)`` reports why a snapshot
    was not used (default: ``warnings.warn`` with :class:`WarmStartWarning`).  After ``boot()``,
    ``warm_result`` says what happened: ``"restored"``, ``"built+restored"``, ``"cold"``
    (fallback) or None (not warm).  ``rootfs_overlay``/``loadvm`` put the root filesystem on a
    writable qcow2 overlay and restore a snapshot from it (what warm start uses).
    """

    def __init__(self, target: Target, run_dir: os.PathLike | str | None = None,
                 timeouts: BootTimeouts = BootTimeouts(), *, base_dir: os.PathLike | str | None = None,
                 snapshot: bool = True, hostfwd: Sequence[str] = (), extra_args: Sequence[str] = (),
                 xen_cmdline_extra: str = "", qemu_binary: str | None = None, user: str = "root",
                 password: str | None = None, progress: ProgressCallback | None = None,
                 command_timeout: float = 300.0, warm: bool = False,
                 snapshot_cache: SnapshotCache | os.PathLike | str | None = None,
                 rebuild_snapshot: bool = False, warn: Callable[[str], None] | None = None,
                 rootfs_overlay: Path | None = None, loadvm: str | None = None) -> None:
        self.target = target
        self.timeouts = timeouts
        self.user = user
        self.password = password
        self.progress = progress
        self.command_timeout = command_timeout
        if run_dir is None:
            base = Path(base_dir) if base_dir is not None else default_run_base()
            base.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            self.run_dir = Path(tempfile.mkdtemp(prefix=f"{_safe(target.name)}-{stamp}-", dir=base))
        else:
            self.run_dir = Path(run_dir).resolve()
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if (self.run_dir / "qemu-cmdline.txt").exists():
                raise MachineError(f"{self.run_dir} already holds a run; give a new run directory "
                                   "(or none, for a fresh one under the base directory)")
        self._socket_dir: Path | None = None
        if len(str(self.run_dir / "serial.sock")) > _SOCKET_PATH_MAX:
            # unix socket paths are limited to 108 bytes: sockets go to a short private folder,
            # linked from the run dir
            self._socket_dir = Path(tempfile.mkdtemp(prefix="xq-", dir="/tmp"))
        self.paths = RunPaths.in_dir(self.run_dir, self._socket_dir)
        self._options: dict[str, Any] = {"hostfwd": tuple(hostfwd), "extra_args": tuple(extra_args),
                                             "xen_cmdline_extra": xen_cmdline_extra, "qemu_binary": qemu_binary}
        self._snapshot_mode = snapshot if rootfs_overlay is None else False
        self.argv: list[str] = build_argv(target, self.paths, snapshot=self._snapshot_mode,
                                          rootfs_overlay=rootfs_overlay, loadvm=loadvm, **self._options)
        self.warm = warm
        if isinstance(snapshot_cache, SnapshotCache):
            self.snapshot_cache: SnapshotCache | None = snapshot_cache
        else:
            self.snapshot_cache = SnapshotCache(snapshot_cache) if warm else None
        self.rebuild_snapshot = rebuild_snapshot
        self._warn = warn
        self.warm_result: str | None = None
        self.warm_snapshot: Snapshot | None = None
        self._session_overlay: Path | None = None
        self._warm_prepared = False
        self.process: subprocess.Popen[bytes] | None = None
        self.watchdog: subprocess.Popen[bytes] | None = None
        self._watchdog_pipe: int | None = None
        self._pidfd: int | None = None
        self._serial_sock: socket.socket | None = None
        self._qmp: _QmpThread | None = None
        self._console_log: Any = None
        self.stream: ConsoleStream | None = None
        self.console: ConsoleChannel | None = None
        self.transcript: Transcript | None = None
        self.phases: list[PhaseResult] = []
        self.started_at: float | None = None
        self._stopped = False
        self._activity = "starting"

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> QemuMachine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        """QEMU's process id (None before start)."""
        return self.process.pid if self.process else None

    def start(self) -> None:
        """Start QEMU paused, connect the serial console and QMP. Idempotent.

        In warm mode this first finds (or builds) the snapshot and copies its overlay; when
        QEMU cannot load the snapshot the machine is started again for a cold boot.
        """
        if self.process is not None:
            return
        if self.warm and not self._warm_prepared:
            self._warm_prepared = True
            self._prepare_warm()
        try:
            self._launch()
        except QemuDied as err:
            if self.warm_snapshot is None:
                raise
            self._fall_back_cold(f"QEMU could not restore the snapshot: {_first_line(str(err), 'QEMU stderr:')}")
            self._launch()

    def _launch(self) -> None:
        if self._socket_dir is not None:
            self._socket_dir.mkdir(exist_ok=True)  # removed by _release after a failed warm attempt
        (self.run_dir / "qemu-cmdline.txt").write_text(format_argv(self.argv) + "\n", encoding="utf-8")
        if self.target.notes:
            (self.run_dir / "target-notes.txt").write_text("\n".join(self.target.notes) + "\n", encoding="utf-8")
        stderr = open(self.run_dir / "qemu-stderr.log", "wb")
        try:
            self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                                            start_new_session=True, close_fds=True, cwd=self.run_dir)
        except FileNotFoundError:
            raise MachineError(f"QEMU binary {self.argv[0]!r} not found: install qemu-system-arm "
                               "(Debian) or pass qemu_binary=/path/to/qemu-system-aarch64") from None
        finally:
            stderr.close()
        self.started_at = time.monotonic()
        try:
            self._start_watchdog()
            self._link_sockets()
            self._wait_sockets(timeout=30.0)
            self._connect_serial()
            self._qmp = _QmpThread(self.paths.qmp_socket, self.run_dir / "qmp-events.jsonl")
            self._qmp.connect()
            self._activity = "paused before boot"
        except Exception as err:
            # QEMU failing at start-up closes its sockets under us: report its death and stderr
            self._wait_exit(2.0)
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
        self._console_log = open(self.run_dir / "console.log", "ab")
        spawn = pexpect.fdpexpect.fdspawn(sock.fileno(), timeout=30)
        spawn.logfile_read = self._console_log
        self.stream = ConsoleStream(spawn, liveness=self.check_alive)
        self.transcript = Transcript(self.run_dir)
        self.console = ConsoleChannel(self.stream, name="dom0", transcript=self.transcript,
                                      default_timeout=self.command_timeout)

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
        raise QemuDied(f"QEMU exited with {how} while {self._activity}.\n"
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

    # ------------------------------------------------------------------ boot

    def resume(self) -> None:
        """Let the paused CPUs run (QMP ``cont``)."""
        self.start()
        self.qmp("cont")

    def boot(self) -> ConsoleChannel:
        """Start (if needed), ``cont``, wait for every boot phase, log in; return the console.

        Raises :class:`BootError` naming the phase that did not complete, or :class:`QemuDied`.
        """
        self.start()
        if self.warm_snapshot is not None:
            try:
                return self._restore()
            except (ConsoleError, BootError, MachineError) as err:
                self._fall_back_cold(f"the restored machine did not answer: {_first_line(str(err))}")
                self._launch()
        assert self.stream is not None and self.console is not None
        self._activity = "booting"
        started = time.monotonic()
        self.qmp("cont")
        self.phases = wait_boot_phases(self.stream, self.timeouts, progress=self.progress,
                                       serial_log=self.paths.serial_log, started=started,
                                       status=self.status)
        self._activity = "logging in"
        try:
            self.console.login(self.user, self.password, timeout=self.timeouts.shell)
        except ConsoleError as err:
            if isinstance(err, QemuDied):
                raise
            raise BootError("shell", f"boot phase 'shell' (shell ready) failed: {err}\n"
                            f"Last lines of the serial log:\n{serial_tail(self.paths.serial_log)}\n"
                            f"Run directory: {self.run_dir}") from err
        elapsed = time.monotonic() - started
        self.phases.append(PhaseResult("shell", "shell ready", elapsed, ""))
        if self.progress is not None:
            self.progress("shell", "shell ready", elapsed)
        self._activity = "running commands"
        return self.console

    # ------------------------------------------------------------------ warm start

    def _report(self, message: str) -> None:
        with open(self.run_dir / "warm-start.log", "a", encoding="utf-8") as f:
            f.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")

    def _warning(self, message: str) -> None:
        self._report("WARNING: " + message)
        if self._warn is not None:
            self._warn(message)
        else:
            warnings.warn(message, WarmStartWarning, stacklevel=3)

    def _prepare_warm(self) -> None:
        """Find or build the snapshot, copy its overlay, switch the argv to a warm start."""
        assert self.snapshot_cache is not None
        cache = self.snapshot_cache
        if self.target.rootfs is None:
            self._warning(f"warm start impossible: {self.target.source} has no root filesystem; booting cold")
            return
        try:
            memo = cache.memo()
            binary = self.argv[0]
            resolved = shutil.which(binary) or binary
            qemu = {"binary": str(Path(resolved).resolve()), "version": memo.version(Path(resolved)),
                    "sha256": memo.sha256(Path(resolved))}
            key = snapshot_key(self.target, key_argv(self.target, **self._options), user=self.user,
                               qemu=qemu, memo=memo)
            memo.save()
        except (SnapshotError, OSError) as err:
            self._warning(f"warm start impossible ({err}); booting cold")
            return
        self._report(f"snapshot key {key.digest} in {cache.directory}")
        snapshot: Snapshot | None = None
        if not self.rebuild_snapshot:
            try:
                snapshot = cache.check(key)
            except SnapshotError as err:
                self._warning(f"warm start: unusable snapshot ({err}); booting cold to rebuild it")
        if snapshot is None:
            try:
                with cache.lock(key):
                    if not self.rebuild_snapshot:
                        try:
                            snapshot = cache.check(key)  # built meanwhile by another session?
                        except SnapshotError:
                            snapshot = None
                    if snapshot is None:
                        snapshot = cache.build(key, self.target.rootfs, self.target.rootfs_format,
                                               self._save_snapshot)
                        self.warm_result = "built"
            except (SnapshotError, BootError, MachineError, ConsoleError, OSError) as err:
                self._warning(f"warm start: building the snapshot failed ({_first_line(str(err))}); "
                              f"booting cold. Build logs: {self.run_dir / 'snapshot-build'}")
                return
        try:
            self._session_overlay = snapshot.copy_overlay(self.run_dir / "rootfs-session.qcow2")
        except SnapshotError as err:
            self._warning(f"warm start: {err}; booting cold")
            return
        self.warm_snapshot = snapshot
        self.argv = build_argv(self.target, self.paths, snapshot=False, rootfs_overlay=self._session_overlay,
                               loadvm=snapshot.name, **self._options)
        self._report(f"restoring {snapshot.directory} ({snapshot.name}) on {self._session_overlay}")

    def _save_snapshot(self, overlay: Path) -> dict[str, Any]:
        """Boot a machine cold on ``overlay``, wait for dom0's shell, ``savevm``, quit."""
        def progress(phase: str, description: str, elapsed: float) -> None:
            if self.progress is not None:
                self.progress("snapshot_" + phase, f"snapshot build: {description}", elapsed)

        builder = QemuMachine(self.target, run_dir=self.run_dir / "snapshot-build", timeouts=self.timeouts,
                              user=self.user, password=self.password, progress=progress,
                              command_timeout=self.command_timeout, rootfs_overlay=overlay, **self._options)
        self._report(f"building the snapshot: cold boot in {builder.run_dir}")
        with builder:
            console = builder.boot()
            console.run("true", timeout=self.timeouts.shell)
            assert builder.stream is not None
            builder.stream.drain(quiet=0.3, limit=3.0)
            started = time.monotonic()
            builder.qmp("stop")
            answer = builder.qmp("human-monitor-command", {"command-line": f"savevm {SNAPSHOT_NAME}"},
                                 timeout=max(600.0, self.timeouts.shell))
            if str(answer).strip():
                raise SnapshotError(f"savevm failed: {str(answer).strip()} (every writable drive must be "
                                    "qcow2; see docs/harness.md)")
            saved = time.monotonic() - started
            console.ready = False  # no poweroff: the VM is stopped and must not change the overlay
            builder.qmp("quit")
            builder._wait_exit(30.0)
        self._report(f"snapshot saved in {saved:.1f}s after a {builder.phases[-1].elapsed:.1f}s boot")
        return {"identity": console.identity, "user": self.user, "save_seconds": round(saved, 2),
                "boot_phases": {p.name: round(p.elapsed, 2) for p in builder.phases},
                "built_in": str(builder.run_dir)}

    def _restore(self) -> ConsoleChannel:
        """Resume the restored VM, re-attach dom0's shell, set its clock."""
        assert self.console is not None and self.warm_snapshot is not None and self.started_at is not None
        self._activity = "restoring the snapshot"
        restored = time.monotonic() - self.started_at
        self.phases = [PhaseResult("restore", "snapshot restored", restored, self.warm_snapshot.name)]
        if self.progress is not None:
            self.progress("restore", "snapshot restored", restored)
        self.qmp("cont")
        # dom0's clock stopped when the snapshot was saved: set it to now (Linux passes a set
        # clock on to Xen's wallclock, which guests created later read at boot).  Done in the
        # same round trip as the sync: the shell only answers if date succeeded.
        self.console.adopt(self.warm_snapshot.identity, timeout=self.timeouts.restore,
                           first=f"date -u -s @{int(time.time() + 0.5)} >/dev/null")
        elapsed = time.monotonic() - self.started_at
        self.phases.append(PhaseResult("shell", "shell ready", elapsed, "clock set"))
        if self.progress is not None:
            self.progress("shell", "shell ready", elapsed)
        self.warm_result = "built+restored" if self.warm_result == "built" else "restored"
        self._activity = "running commands"
        self._report(f"restored; shell ready {elapsed:.1f}s after QEMU started")
        return self.console

    def _fall_back_cold(self, reason: str) -> None:
        """Stop the warm attempt, keep its logs in ``warm-attempt/``, discard the snapshot, go cold."""
        snapshot = self.warm_snapshot
        self._warning(f"warm start failed: {reason}; the snapshot {snapshot.directory if snapshot else ''} "
                      "is discarded and this session boots cold")
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
        attempt = self.run_dir / "warm-attempt"
        attempt.mkdir(exist_ok=True)
        for name in ("serial.log", "console.log", "qemu-stderr.log", "qemu-cmdline.txt", "transcript.log",
                     "transcript.jsonl", "qmp-events.jsonl", "watchdog.log"):
            if (self.run_dir / name).exists():
                os.replace(self.run_dir / name, attempt / name)
        if self._session_overlay is not None and self._session_overlay.exists():
            self._session_overlay.unlink()
        self._session_overlay = None
        if snapshot is not None and self.snapshot_cache is not None:
            key_dir = snapshot.directory
            if key_dir.exists():
                try:
                    trash = Path(tempfile.mkdtemp(prefix=".trash-", dir=key_dir.parent))
                    os.rename(key_dir, trash / key_dir.name)
                    shutil.rmtree(trash, ignore_errors=True)
                except OSError:
                    pass
        self.warm_snapshot = None
        self.warm_result = "cold"
        self.argv = build_argv(self.target, self.paths, snapshot=self._snapshot_mode, **self._options)

    # ------------------------------------------------------------------ stop

    def stop(self) -> int | None:
        """Stop QEMU (poweroff, QMP quit, SIGTERM, SIGKILL) and release everything; return its status."""
        if self._stopped:
            return self.process.returncode if self.process else None
        self._activity = "stopping"
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

    def _wait_exit(self, seconds: float) -> bool:
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
            try:
                self.console.start("poweroff -f")
            except Exception:  # the console may be dead or stuck; QMP quit comes next anyway
                pass
            self._wait_exit(self.timeouts.poweroff)
        if self.process.poll() is None and self._qmp is not None:
            try:
                self._qmp.execute("quit", timeout=5.0)
            except Exception:  # QEMU may close the socket before answering
                pass
            self._wait_exit(10.0)
        if self.process.poll() is None:
            self.process.terminate()
            if not self._wait_exit(5.0):
                self._kill_hard()
        return self.process.returncode

    def _kill_hard(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
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
        if self._socket_dir is not None:
            for name in ("qmp.sock", "serial.sock"):
                try:
                    (self._socket_dir / name).unlink()
                except FileNotFoundError:
                    pass
            try:
                self._socket_dir.rmdir()
            except OSError:
                pass
        if self._session_overlay is not None and self._stopped:
            try:
                self._session_overlay.unlink()
            except FileNotFoundError:
                pass


def _first_line(text: str, after: str = "") -> str:
    """The first non-empty line of ``text`` (after the line ``after``, when given and present)."""
    lines = text.splitlines()
    if after and after in lines:
        lines = lines[lines.index(after) + 1:]
    return next((line.strip() for line in lines if line.strip()), text.strip()[:200])


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:40] or "run"
