"""``xenqemu`` command line: boot a Xen host image in QEMU, run commands, check guest lifecycles.

Commands (TARGET is a ``<image>.qemuboot.conf`` or a YAML target)::

    xenqemu boot TARGET                  boot to an interactive dom0 console (Ctrl-] quits)
    xenqemu run TARGET -- CMD [ARGS...]  boot, run one command, print its output, exit with its status
    xenqemu lifecycle TARGET [--guest CFG ...]
                                         the standard guest lifecycle check, exit 0/1 with a summary

Every command prints one progress line per boot phase and the run directory, and accepts
``--print-cmdline`` (print the QEMU command line and exit), ``--run-dir BASE``,
``--timeout-scale X``, ``--password PW``, ``--hostfwd H:G``, ``--qemu PATH``, ``--xen-append ARGS``,
and for a warm start ``--warm`` (start from a saved snapshot of the booted host, building it the
first time), ``--snapshot-cache DIR`` and ``--rebuild-snapshot``.
"""

from __future__ import annotations

import argparse
import os
import re
import select
import shlex
import sys
import termios
import time
import tty
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .boot import BootError, BootTimeouts
from .cmdline import RunPaths, build_argv, format_argv
from .console import ConsoleChannel, ConsoleError
from .machine import MachineError, QemuMachine
from .target import Target, TargetError, load_target
from .xl import Xl, XlError

__all__ = ["LifecycleStep", "build_parser", "lifecycle_check", "main"]

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def _progress_printer(stream=sys.stderr) -> Callable[[str, str, float], None]:  # type: ignore[no-untyped-def]
    def progress(phase: str, description: str, elapsed: float) -> None:
        print(f"xenqemu: [{elapsed:7.1f}s] {description}", file=stream, flush=True)
    return progress


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
    life = sub.add_parser("lifecycle", parents=[common], help="standard guest lifecycle check")
    life.add_argument("--guest", action="append", default=[], metavar="CFG",
                      help="guest config path in dom0 (repeatable; default: every /etc/xen/*.cfg)")
    life.add_argument("--guest-timeout", type=float, default=600.0, help="guest boot timeout in seconds")
    return parser


def _machine(args: argparse.Namespace, target: Target) -> QemuMachine:
    def warn(message: str) -> None:
        print(f"xenqemu: WARNING: {message}", file=sys.stderr, flush=True)

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


@dataclass
class LifecycleStep:
    """One checked step of the lifecycle check."""

    guest: str
    step: str
    ok: bool
    seconds: float
    detail: str = ""


@dataclass
class _Report:
    steps: list[LifecycleStep] = field(default_factory=list)

    def check(self, guest: str, step: str, action: Callable[[], str]) -> bool:
        started = time.monotonic()
        try:
            detail = action() or ""
            ok = True
        except (ConsoleError, XlError, AssertionError) as err:
            detail, ok = str(err), False
        seconds = time.monotonic() - started
        self.steps.append(LifecycleStep(guest, step, ok, seconds, detail))
        word = "PASS" if ok else "FAIL"
        first = detail.strip().splitlines()[0] if detail.strip() else ""
        print(f"xenqemu: {word} {guest}: {step} ({seconds:.1f}s){(' - ' + first) if first else ''}",
              file=sys.stderr, flush=True)
        if not ok and "\n" in detail.strip():
            print("    " + detail.strip().replace("\n", "\n    "), file=sys.stderr, flush=True)
        return ok


_EXTRA = re.compile(r"""^\s*extra\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.MULTILINE)


def lifecycle_check(console: ConsoleChannel, guests: Sequence[str] = (), guest_timeout: float = 600.0,
                    password: str | None = None) -> list[LifecycleStep]:
    """The standard lifecycle check on a booted host; returns every step with its outcome.

    dom0: ``xl info`` and ``xl list`` (Domain-0 present).  Then for each guest config (default:
    every ``/etc/xen/*.cfg``): ``xl create -c`` reaches the guest shell, the guest's
    ``/proc/cmdline`` holds the config's ``extra``, detach, ``xl list`` shows it running or
    blocked, ``xl destroy`` removes it and its memory comes back.
    """
    xl = Xl(console, guest_boot_timeout=guest_timeout)
    report = _Report()

    def info() -> str:
        data = xl.info()
        assert "free_memory" in data, "xl info has no free_memory"
        return f"Xen {data.get('xen_version', '?')}, free_memory {data['free_memory']} MiB"

    def dom0_listed() -> str:
        domains = xl.list()
        assert any(d.name == "Domain-0" and d.id == 0 for d in domains), f"no Domain-0 in xl list: {domains}"
        return ", ".join(f"{d.name}({d.mem} MiB)" for d in domains)

    report.check("dom0", "xl info", info)
    report.check("dom0", "xl list shows Domain-0", dom0_listed)
    configs = list(guests)
    if not configs:
        found = console.run("ls -1 /etc/xen/*.cfg 2>/dev/null", timeout=120)
        configs = [line.strip() for line in found.output.splitlines() if line.strip().endswith(".cfg")]
        if not configs:
            report.steps.append(LifecycleStep("dom0", "find guest configs in /etc/xen", False, 0.0,
                                              "no /etc/xen/*.cfg: bundle a guest or pass --guest"))
            print("xenqemu: FAIL dom0: no guest configs in /etc/xen (pass --guest CFG)", file=sys.stderr)
    for config in configs:
        label = Path(config).name
        try:
            name = xl.config_name(config)
            text = console.run(f"cat {shlex.quote(config)}", timeout=120).output
        except (ConsoleError, XlError) as err:
            report.steps.append(LifecycleStep(label, "read config", False, 0.0, str(err)))
            print(f"xenqemu: FAIL {label}: read config - {err}", file=sys.stderr)
            continue
        extra_match = _EXTRA.findall(text)
        extra = (extra_match[-1][0] or extra_match[-1][1]) if extra_match else ""
        state = {"cmdline": ""}

        def create_and_check() -> str:
            with xl.create(config, console=True, password=password, boot_timeout=guest_timeout) as guest:
                result = guest.run("cat /proc/cmdline", timeout=120)
                state["cmdline"] = result.output.strip()
            return f"guest shell reached, detached; cmdline: {state['cmdline']}"

        if not report.check(name, "xl create -c, guest shell, detach", create_and_check):
            _cleanup(console, xl, name)
            continue
        report.check(name, "guest kernel command line matches extra",
                     lambda: _assert(extra in state["cmdline"],
                                     f"/proc/cmdline {state['cmdline']!r} lacks extra {extra!r}"))
        report.check(name, "xl list shows it running or blocked",
                     lambda: str(xl.wait_state(name, ("r", "b"), timeout=120)))
        report.check(name, "xl destroy, gone, memory back", lambda: (xl.destroy(name), "")[1])
        _cleanup(console, xl, name)
    return report.steps


def _assert(condition: bool, message: str) -> str:
    if not condition:
        raise AssertionError(message)
    return ""


def _cleanup(console: ConsoleChannel, xl: Xl, name: str) -> None:
    try:
        console.sync(timeout=30)
    except ConsoleError:
        try:
            console.resync()
        except ConsoleError:
            return
    try:
        if xl.find(name) is not None:
            xl.destroy(name, check_memory=False)
    except (ConsoleError, XlError):
        pass


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
    try:
        target = load_target(args.target)
    except TargetError as err:
        print(f"xenqemu: {err}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "run":
        cmd = args.cmd
        if not cmd:
            print("xenqemu: run needs a command: xenqemu run TARGET -- COMMAND", file=sys.stderr)
            return EXIT_USAGE
    if args.print_cmdline:
        try:
            argv_list = build_argv(target, RunPaths.in_dir(Path("<run-dir>")), hostfwd=args.hostfwd,
                                   xen_cmdline_extra=args.xen_append, qemu_binary=args.qemu)
        except (TargetError, ValueError) as err:
            print(f"xenqemu: {err}", file=sys.stderr)
            return EXIT_USAGE
        print(format_argv(argv_list))
        for note in target.notes:
            print(f"# note: {note}")
        return EXIT_OK
    try:
        machine = _machine(args, target)
    except (TargetError, ValueError, MachineError) as err:
        print(f"xenqemu: {err}", file=sys.stderr)
        return EXIT_USAGE
    print(f"xenqemu: run directory {machine.run_dir}", file=sys.stderr, flush=True)
    try:
        with machine:
            console = machine.boot()
            if args.command == "boot":
                print("xenqemu: dom0 shell ready; Ctrl-] quits (and powers off)", file=sys.stderr, flush=True)
                _interact(machine)
                return EXIT_OK
            if args.command == "run":
                result = console.run(" ".join(shlex.quote(c) for c in cmd) if len(cmd) > 1 else cmd[0],
                                     timeout=args.timeout)
                sys.stdout.write(result.output)
                sys.stdout.flush()
                return result.status
            steps = lifecycle_check(console, args.guest, args.guest_timeout, args.password)
            failed = [s for s in steps if not s.ok]
            print(f"xenqemu: summary: {len(steps) - len(failed)} of {len(steps)} checks passed"
                  f"{'' if failed else ' - lifecycle OK'}", file=sys.stderr)
            for step in failed:
                print(f"xenqemu:   FAILED {step.guest}: {step.step}", file=sys.stderr)
            print(f"xenqemu: logs in {machine.run_dir}", file=sys.stderr)
            return EXIT_FAIL if failed or not steps else EXIT_OK
    except (BootError, MachineError, ConsoleError) as err:
        print(f"xenqemu: FAILED: {err}\nxenqemu: logs in {machine.run_dir}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        print(f"\nxenqemu: interrupted; QEMU stopped. Logs in {machine.run_dir}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
