"""``xenqemu`` command line: boot a Xen host image in QEMU, run commands, check guest lifecycles.

Commands (TARGET is a ``<image>.qemuboot.conf`` or a YAML target)::

    xenqemu boot TARGET                  boot to an interactive dom0 console (Ctrl-] quits)
    xenqemu run TARGET -- CMD [ARGS...]  boot, run one command, print its output, exit with its status
    xenqemu lifecycle TARGET [--guest CFG ...] [--junit FILE]
                                         the guest lifecycle check (xenqemu.lifecycle), exit 0/1

Every command prints one progress line per boot phase and the run directory, and accepts
``--print-cmdline`` (print the QEMU command line and exit), ``--run-dir BASE``,
``--timeout-scale X``, ``--password PW``, ``--hostfwd H:G``, ``--qemu PATH``, ``--xen-append ARGS``,
and for a warm start ``--warm`` (start from a saved snapshot of the booted host, building it the
first time), ``--snapshot-cache DIR`` and ``--rebuild-snapshot``.

SIGINT and SIGTERM end any command the same way: QEMU is stopped at once (QMP ``quit``, no
poweroff), one line says so and where the logs are, and the exit status is 130 or 143.
"""

from __future__ import annotations

import argparse
import os
import select
import shlex
import signal
import subprocess
import sys
import termios
import time
import tty
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import FrameType
from typing import Callable, TextIO

from xenboot.devicetree import dom0less_domains_in

from .boot import BootError, BootTimeouts
from .cmdline import RunPaths, build_argv, format_argv
from .console import ConsoleChannel, ConsoleError
from .errors import XenqemuError
from .lifecycle import (
    LifecycleOptions,
    LifecycleReport,
    LoopbackHttpServer,
    Outcome,
    PoweroffProbe,
    StepResult,
    run_lifecycle,
)
from .machine import MachineError, QemuMachine
from .poweroff import MachinePoweroff, writable_overlay
from .target import Target, TargetError, load_target

__all__ = ["Interrupted", "build_parser", "main"]

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class Interrupted(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (SIGINT); ``status`` is the exit status (128 + signal)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.status = 128 + signum


def _progress_printer(stream: TextIO = sys.stderr) -> Callable[[str, str, float], None]:
    def progress(phase: str, description: str, elapsed: float) -> None:
        print(f"xenqemu: [{elapsed:7.1f}s] {description}", file=stream, flush=True)
    return progress


def _say(message: str) -> None:
    print(f"xenqemu: {message}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``xenqemu`` command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("target", help="<image>.qemuboot.conf or YAML target file")
    common.add_argument("--print-cmdline", action="store_true", help="print the QEMU command line and exit")
    common.add_argument("--run-dir", default=None, help="base folder for the run directory "
                        "(default $XENQEMU_RUN_BASE or <tmp>/xenqemu-runs)")
    common.add_argument("--timeout-scale", type=float, default=1.0, help="multiply every boot timeout")
    common.add_argument("--password", default=None, help="root password (default: none)")
    common.add_argument("--hostfwd", action="append", default=[], metavar="HOST:GUEST",
                        help="forward 127.0.0.1:HOST to the guest port GUEST (repeatable)")
    common.add_argument("--qemu", default=None, help="QEMU binary to use instead of the target's")
    common.add_argument("--xen-append", default="", help="extra words for Xen's command line")
    common.add_argument("--warm", action="store_true",
                        help="start from a saved snapshot of the booted host (built on first use)")
    common.add_argument("--snapshot-cache", default=None, metavar="DIR",
                        help="folder of warm-start snapshots (default $XENQEMU_SNAPSHOT_CACHE or "
                        "~/.cache/meta-xen-ref/xenqemu-snapshots)")
    common.add_argument("--rebuild-snapshot", action="store_true",
                        help="with --warm: build the snapshot again even if a valid one exists")
    parser = argparse.ArgumentParser(prog="xenqemu", description="Boot a Xen host image in QEMU and drive xl "
                                     "over the serial console.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("boot", parents=[common], help="boot to an interactive dom0 console (Ctrl-] quits)")
    run = sub.add_parser("run", parents=[common], help="boot, run one command, exit with its status")
    run.add_argument("cmd", nargs="*", help="-- COMMAND [ARGS...] (everything after --)")
    run.add_argument("--timeout", type=float, default=600.0, help="command timeout in seconds")
    _lifecycle_arguments(sub.add_parser("lifecycle", parents=[common], help="the guest lifecycle check"))
    return parser


def _lifecycle_arguments(life: argparse.ArgumentParser) -> None:
    life.add_argument("--guest", action="append", default=[], metavar="CFG",
                      help="guest config path in dom0 (repeatable; default: every /etc/xen/*.cfg)")
    life.add_argument("--guest-timeout", type=float, default=600.0, help="guest boot timeout in seconds "
                      "(multiplied by --timeout-scale, like every lifecycle timeout)")
    life.add_argument("--no-network", action="store_true",
                      help="do not check addresses and HTTP (default: checked when the target has a network)")
    life.add_argument("--no-http", action="store_true",
                      help="no HTTP fetch from the guests (default: a server on 127.0.0.1, seen as 10.0.2.2)")
    life.add_argument("--hostname-is-name", action="store_true",
                      help="each guest's /etc/hostname must be its domain name (true for the reference target)")
    life.add_argument("--expect-hostname", action="append", default=[], metavar="DOMAIN=HOSTNAME",
                      help="the /etc/hostname a guest's disk holds (repeatable)")
    life.add_argument("--sequential", action="store_true",
                      help="one guest at a time (default: create the guests that fit into Xen's free memory "
                      "together)")
    life.add_argument("--poweroff", action="store_true",
                      help="end with dom0's poweroff: the guests started at boot are left running, and "
                      "must be shut down cleanly (their disks clean) with QEMU exiting 0 in time; dom0's "
                      "root file system runs on a writable overlay in the run directory (not with --warm)")
    life.add_argument("--shutdown-marker", metavar="PATH", default=None,
                      help="with --poweroff: a file each guest writes on its disk when it shuts down; it "
                      "must name the guest (name=<guest>)")
    life.add_argument("--junit", metavar="FILE", default=None,
                      help="write a JUnit XML report (one test case per step and guest)")


def _machine(args: argparse.Namespace, target: Target) -> QemuMachine:
    def warn(message: str) -> None:
        _say(f"WARNING: {message}")

    if args.rebuild_snapshot and not args.warm:
        raise ValueError("--rebuild-snapshot needs --warm")
    return QemuMachine(target, timeouts=BootTimeouts().scaled(args.timeout_scale), base_dir=args.run_dir,
                       hostfwd=args.hostfwd, qemu_binary=args.qemu, xen_cmdline_extra=args.xen_append,
                       password=args.password, progress=_progress_printer(), warm=args.warm,
                       snapshot_cache=args.snapshot_cache, rebuild_snapshot=args.rebuild_snapshot, warn=warn)


def _interact(machine: QemuMachine) -> None:
    """Relay the terminal to the serial console until Ctrl-] (alone) is typed."""
    assert machine.stream is not None
    spawn = machine.stream.spawn
    pending = machine.stream.buffer
    machine.stream.buffer = ""
    if pending:
        sys.stdout.write(pending)
        sys.stdout.flush()
    stdin = sys.stdin.fileno()
    old = termios.tcgetattr(stdin) if os.isatty(stdin) else None
    if old is not None:
        tty.setraw(stdin)
    try:
        while True:
            machine.check_alive()
            ready, _, _ = select.select([stdin, spawn.child_fd], [], [], 0.5)
            if spawn.child_fd in ready:
                data = os.read(spawn.child_fd, 65536)
                if not data:
                    break
                os.write(sys.stdout.fileno(), data)
            if stdin in ready:
                data = os.read(stdin, 1024)
                if not data or data == b"\x1d":
                    break
                os.write(spawn.child_fd, data)
    finally:
        if old is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, old)
        print("\r\nxenqemu: leaving the console, powering off", file=sys.stderr, flush=True)


def _hostnames(args: argparse.Namespace) -> Callable[[str], str | None] | None:
    given = {}
    for item in args.expect_hostname:
        domain, sep, hostname = item.partition("=")
        if not sep or not domain or not hostname:
            raise ValueError(f"--expect-hostname {item!r}: write DOMAIN=HOSTNAME")
        given[domain] = hostname
    if not given and not args.hostname_is_name:
        return None
    return lambda name: given.get(name, name if args.hostname_is_name else None)


def lifecycle_options(args: argparse.Namespace, target: Target, http: LoopbackHttpServer | None,
                      poweroff: PoweroffProbe | None = None) -> LifecycleOptions:
    """The lifecycle check's options from the command line (timeouts scaled like the boot's)."""
    scale = args.timeout_scale
    return LifecycleOptions(guests=tuple(args.guest), network=target.network and not args.no_network, http=http,
                            expected_hostname=_hostnames(args), password=args.password,
                            concurrent=not args.sequential, guest_boot_timeout=args.guest_timeout * scale,
                            command_timeout=120.0 * scale, dhcp_timeout=300.0 * scale, memory_timeout=120.0 * scale,
                            xl_timeout=300.0 * scale, poweroff=poweroff, poweroff_timeout=180.0 * scale,
                            dom0less=tuple(dom0less_domains_in(target.variables)))


def _print_result(result: StepResult) -> None:
    _say(result.line())
    if result.outcome is Outcome.FAIL and "\n" in result.detail.strip():
        print("    " + result.detail.strip().replace("\n", "\n    "), file=sys.stderr, flush=True)


def _lifecycle(args: argparse.Namespace, machine: QemuMachine, console: ConsoleChannel) -> int:
    network = machine.target.network and not args.no_network
    with (LoopbackHttpServer() if network and not args.no_http else nullcontext()) as http:
        if http is not None:
            _say(f"HTTP server on 127.0.0.1:{http.port} (10.0.2.2:{http.port} from the guests)")
        overlay = getattr(args, "poweroff_overlay", None)
        probe = MachinePoweroff(machine, overlay, args.shutdown_marker) if overlay is not None else None
        report = run_lifecycle(console, lifecycle_options(args, machine.target, http, probe), on_result=_print_result)
    for line in report.summary().splitlines():
        _say(("  " if line.startswith("FAILED") else "summary: ") + line)
    _write_junit(args, report, machine)
    return EXIT_OK if report.ok else EXIT_FAIL


def _write_junit(args: argparse.Namespace, report: LifecycleReport, machine: QemuMachine | None) -> None:
    if not getattr(args, "junit", None):
        return
    properties = {"target": str(args.target)}
    if machine is not None:
        properties["run_dir"] = str(machine.run_dir)
        properties.update({f"boot: {p.description}": f"{p.elapsed:.1f}" for p in machine.phases})
    try:
        Path(args.junit).write_text(report.junit_xml(properties=properties), encoding="utf-8")
    except OSError as err:
        _say(f"cannot write the JUnit report {args.junit}: {err.strerror}")
        return
    _say(f"JUnit report {args.junit}")


def _boot_failure_report(err: Exception, seconds: float) -> LifecycleReport:
    return LifecycleReport([StepResult("dom0", "boot", Outcome.FAIL, seconds, str(err) or type(err).__name__,
                                       "the host boots to a dom0 shell")], seconds)


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM raises :class:`Interrupted` (like SIGINT raises KeyboardInterrupt) while inside."""
    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _quit_at_once(machine: QemuMachine) -> None:
    """Stop QEMU now: QMP quit, no poweroff in dom0 (the machine's stop() then only tidies up)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not break the clean-up
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    process = machine.process
    if process is None or process.poll() is not None:
        return
    try:
        machine.qmp("quit", timeout=2.0)
    except Exception:  # noqa: BLE001 - QEMU may close the socket before answering; then kill it
        process.kill()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


def _command(args: argparse.Namespace, machine: QemuMachine, console: ConsoleChannel, started: float) -> int:
    if args.command == "boot":
        _say("dom0 shell ready; Ctrl-] quits (and powers off)")
        _interact(machine)
        return EXIT_OK
    if args.command == "run":
        cmd = args.cmd
        result = console.run(" ".join(shlex.quote(c) for c in cmd) if len(cmd) > 1 else cmd[0], timeout=args.timeout)
        sys.stdout.write(result.output)
        sys.stdout.flush()
        return result.status
    status = _lifecycle(args, machine, console)
    boot = machine.phases[-1].elapsed if machine.phases else 0.0
    _say(f"wall time {time.monotonic() - started:.1f}s (boot {boot:.1f}s); logs in {machine.run_dir}")
    return status


def _session(args: argparse.Namespace, machine: QemuMachine) -> int:
    """Boot and do the command; QEMU is stopped when it returns or raises (at once when interrupted)."""
    started = time.monotonic()
    with machine:
        try:
            try:
                console = machine.boot()
            except (BootError, MachineError, ConsoleError) as err:
                _write_junit(args, _boot_failure_report(err, time.monotonic() - started), machine)
                raise
            return _command(args, machine, console, started)
        except KeyboardInterrupt:
            _quit_at_once(machine)
            raise


def _prepare(args: argparse.Namespace) -> Target | int:
    """Load the target, or handle --print-cmdline and usage errors (returns the exit status then)."""
    try:
        target = load_target(args.target)
    except TargetError as err:
        _say(str(err))
        return EXIT_USAGE
    if args.command == "run" and not args.cmd:
        _say("run needs a command: xenqemu run TARGET -- COMMAND")
        return EXIT_USAGE
    if not args.print_cmdline:
        return target
    try:
        argv_list = build_argv(target, RunPaths.in_dir(Path("<run-dir>")), hostfwd=args.hostfwd,
                               xen_cmdline_extra=args.xen_append, qemu_binary=args.qemu)
    except (TargetError, ValueError) as err:
        _say(str(err))
        return EXIT_USAGE
    print(format_argv(argv_list))
    for note in target.notes:
        print(f"# note: {note}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xenqemu`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # everything after the first "--" is the command of "run", never an option of ours
    command_words: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, command_words = argv[:cut], argv[cut + 1:]
    args = build_parser().parse_args(argv)
    if args.command == "run":
        args.cmd = list(args.cmd) + command_words
    machine: QemuMachine | None = None
    with _signals_interrupt():
        try:
            target = _prepare(args)
            if isinstance(target, int):
                return target
            try:
                if args.command == "lifecycle":
                    _hostnames(args)  # a malformed --expect-hostname is a usage error, before booting
                machine = _machine(args, target)
                if args.command == "lifecycle" and args.poweroff:
                    if args.warm:
                        raise ValueError("--poweroff boots cold on a writable overlay: leave out --warm")
                    args.poweroff_overlay = writable_overlay(machine)
            except (TargetError, ValueError, MachineError) as err:
                _say(str(err))
                return EXIT_USAGE
            _say(f"run directory {machine.run_dir}")
            return _session(args, machine)
        except (XenqemuError, BootError, MachineError, ConsoleError) as err:
            _say(f"FAILED: {err}" + (f"\nxenqemu: logs in {machine.run_dir}" if machine else ""))
            return EXIT_FAIL
        except KeyboardInterrupt as interrupt:
            where = f"QEMU stopped. Logs in {machine.run_dir}" if machine else "nothing was started"
            print(f"\nxenqemu: interrupted; {where}", file=sys.stderr, flush=True)
            return interrupt.status if isinstance(interrupt, Interrupted) else 130


if __name__ == "__main__":
    sys.exit(main())
