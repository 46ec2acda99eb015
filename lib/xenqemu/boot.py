"""Boot phases of a Xen host on its serial console, each with its own timeout and message.

Phases, in order (each timeout counts from the end of the previous phase):

=================  ==========================================================================
``xen_banner``     Xen's banner / "Xen version" line: QEMU started Xen.
``dom0_handover``  Xen's "Serial input to DOM0" line: Xen built dom0 and gave it the console.
``dom0_kernel``    the first line that is not a ``(XEN)`` line after the hand-over: dom0 runs.
``login_prompt``   a ``login:`` prompt (or a shell prompt, for images that start a shell).
``shell``          a shell answers a marker (after logging in).
=================  ==========================================================================

A failed phase raises :class:`BootError` saying which phase, what was awaited, how long, and the
last lines of the serial log.  Defaults tolerate TCG on a busy machine (several times slower than
the ~8 s idle boot): the shell is reached within 600 s + 300 s in the worst case.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .console import (
    ConsoleChannel,
    ConsoleError,
    ConsoleStream,
    ConsoleTimeout,
    clean_text,
)
from .errors import XenqemuError

if TYPE_CHECKING:
    from .machine import QemuMachine

__all__ = ["PHASES", "BootError", "BootTimeouts", "ColdBoot", "PhaseResult", "serial_tail", "wait_boot_phases"]


@dataclass(frozen=True)
class BootTimeouts:
    """Per-phase timeouts in seconds (each from the end of the previous phase)."""

    xen_banner: float = 180.0
    dom0_handover: float = 300.0
    dom0_kernel: float = 300.0
    login_prompt: float = 600.0
    shell: float = 300.0
    #: warm start: from ``cont`` after ``-loadvm`` to the restored shell answering
    restore: float = 120.0
    #: waiting for QEMU to exit after ``poweroff -f``
    poweroff: float = 60.0

    def scaled(self, factor: float) -> BootTimeouts:
        """All timeouts multiplied by ``factor`` (e.g. 2.0 on a very slow machine)."""
        return replace(self, **{f.name: getattr(self, f.name) * factor for f in fields(self)})


@dataclass(frozen=True)
class Phase:
    """One boot phase: name, what it means, and the console pattern that ends it."""

    name: str
    description: str
    pattern: str
    hint: str


PHASES: list[Phase] = [
    Phase("xen_banner", "Xen banner", r"Xen version \d|\(XEN\) Xen \d|__  __",
          "QEMU did not start Xen: check -kernel is a Xen binary for the machine (on arm64 with "
          "-machine virtualization=on,gic-version=3; on x86 the uncompressed multiboot ELF, not xen.gz)"),
    Phase("dom0_handover", "hand-over to dom0", r"Serial input to DOM0[^\n]*\n",
          "Xen did not start dom0: look for a panic above; check dom0's kernel (guest-loader on Arm, "
          "the first -initrd module on x86), dom0_mem and that QEMU has enough memory"),
    Phase("dom0_kernel", "dom0 kernel output", r"(?m)^(?!\(XEN\))[^\n]*\S[^\n]*\n",
          "dom0 printed nothing: check dom0's bootargs have console=hvc0"),
    # dom0's: a line that Xen did not prefix (a dom0less guest's prompt reads "(XEN) DOM1: ... login:")
    Phase("login_prompt", "login prompt", r"(?:^|\n)(?!\(XEN\)|\(d\d+\))[^\n]*(?:login:|[#$])[ \t]*$",
          "dom0 booted but no login prompt or shell appeared on hvc0: check the getty/shell on hvc0 "
          "and the root filesystem (root=, initrd modules)"),
]


class BootError(XenqemuError, RuntimeError):
    """A boot phase did not complete; the message names it and quotes the serial log."""

    def __init__(self, phase: str, message: str) -> None:
        super().__init__(message)
        self.phase = phase


@dataclass
class PhaseResult:
    """When a phase completed (seconds since the boot started) and the line that showed it."""

    name: str
    description: str
    elapsed: float
    evidence: str


def serial_tail(path: Path | None, lines: int = 30, fallback: str = "") -> str:
    """The last ``lines`` lines of the serial log (cleaned), or ``fallback``."""
    text = fallback
    if path is not None and Path(path).exists():
        data = Path(path).read_bytes()[-65536:]
        text = clean_text(data.decode("utf-8", "replace"))
    return "\n".join(text.splitlines()[-lines:])


ProgressCallback = Callable[[str, str, float], None]


def wait_boot_phases(stream: ConsoleStream, timeouts: BootTimeouts, *,
                     progress: ProgressCallback | None = None, serial_log: Path | None = None,
                     started: float | None = None, status: Callable[[], str] | None = None
                     ) -> list[PhaseResult]:
    """Wait for the console phases (all but ``shell``) in order; return when each was seen.

    The login prompt is left in the stream's buffer for :meth:`ConsoleChannel.login`.  ``status``
    (e.g. QMP ``query-status``) is added to failure messages.
    """
    started = time.monotonic() if started is None else started
    results: list[PhaseResult] = []
    for phase in PHASES:
        timeout = getattr(timeouts, phase.name)
        phase_start = time.monotonic()
        deadline = phase_start + timeout
        pattern = re.compile(phase.pattern)
        keep = phase.name == "login_prompt"  # left in the buffer for login()
        quiet = False
        while True:
            m = pattern.search(stream.buffer)
            # A shell prompt only counts when the console pauses after it (a '#' or '$' may end
            # a half-received boot message).  "login:" counts at once: getty flushes its input
            # before printing it, so the user name can follow immediately.
            if m and (not keep or quiet or "login:" in m.group(0)):
                evidence = m.string[max(0, m.start() - 60):m.end()].strip()
                if not keep:
                    stream.buffer = stream.buffer[m.end():]
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                state = ""
                if status is not None:
                    try:
                        state = f" QEMU status: {status()}."
                    except Exception as err:  # noqa: BLE001  (a diagnostic: any failure of the query is reported)
                        state = f" (QEMU status unavailable: {err})"
                raise BootError(phase.name,
                                f"boot phase '{phase.name}' ({phase.description}) not reached within "
                                f"{timeout:.0f}s (total {time.monotonic() - started:.0f}s).{state}\n"
                                f"Hint: {phase.hint}.\nLast lines of the serial log:\n"
                                + serial_tail(serial_log, fallback=stream.buffer))
            # a prompt counts after 0.25 s without output (not in the middle of boot messages)
            quiet = not stream.fill(min(0.25 if keep else 0.5, remaining))
        elapsed = time.monotonic() - started
        results.append(PhaseResult(phase.name, phase.description, elapsed, evidence[-120:]))
        if progress is not None:
            progress(phase.name, phase.description, elapsed)
    return results


class ColdBoot:
    """The cold-boot strategy: ``cont``, every console phase, login and the console protocol.

    Used by :meth:`QemuMachine.boot <xenqemu.machine.QemuMachine.boot>` (and by a warm start that
    falls back); the machine owns QEMU, QMP and the console, this owns the order of the steps.
    """

    def run(self, machine: QemuMachine) -> ConsoleChannel:
        """Boot the started, paused ``machine`` to a logged-in shell and return its console."""
        assert machine.stream is not None and machine.console is not None
        timeouts = machine.options.timeouts
        machine.activity = "booting"
        started = time.monotonic()
        machine.qmp("cont")
        machine.phases = wait_boot_phases(machine.stream, timeouts, progress=machine.options.progress,
                                          serial_log=machine.paths.serial_log, started=started,
                                          status=machine.status)
        machine.activity = "logging in"
        try:
            machine.console.login(machine.options.user, machine.options.password, timeout=timeouts.shell)
        except ConsoleError as err:
            raise BootError("shell", f"boot phase 'shell' (shell ready) failed: {err}\n"
                            f"Last lines of the serial log:\n{serial_tail(machine.paths.serial_log)}\n"
                            f"Run directory: {machine.run_dir}") from err
        machine.record_phase(PhaseResult("shell", "shell ready", time.monotonic() - started, ""))
        machine.activity = "running commands"
        return machine.console


__all__ += ["ConsoleTimeout", "ProgressCallback"]
