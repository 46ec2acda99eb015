"""Watchdog process: kills QEMU when the Python process that started it dies.

Started by :class:`xenqemu.machine.QemuMachine` as ``python -I -S _watchdog.py PIDFD PIPEFD PGID LOG``
in its own session.  It inherits a pidfd of QEMU (so a reused PID can never be hit) and the read
end of a pipe whose only write end the parent holds.  When that pipe reports end-of-file — the
parent exited, was killed with SIGKILL, or closed it on purpose — and QEMU still runs, the
watchdog sends SIGTERM, then SIGKILL, to QEMU and its process group.  When QEMU exits first the
watchdog just exits.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time


def _alive(pidfd: int) -> bool:
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return not poller.poll(0)  # a pidfd becomes readable when the process exits


def _log(path: str, text: str) -> None:
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(time.strftime("%Y-%m-%dT%H:%M:%S ") + text + "\n")
    except OSError:
        pass


def kill_process(pidfd: int, pgid: int, log: str, term_wait: float = 5.0) -> None:
    """SIGTERM the process (and its group), wait up to ``term_wait`` s, then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, term_wait), (signal.SIGKILL, 10.0)):
        if not _alive(pidfd):
            return
        _log(log, f"sending {sig.name} to QEMU")
        try:
            signal.pidfd_send_signal(pidfd, sig)
        except ProcessLookupError:
            return
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        poller.poll(int(wait * 1000))


def main(argv: list[str]) -> int:
    """Entry point: ``PIDFD PIPEFD PGID LOGFILE``."""
    pidfd, pipefd, pgid, log = int(argv[0]), int(argv[1]), int(argv[2]), argv[3]
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    poller.register(pipefd, select.POLLIN | select.POLLHUP)
    while True:
        events = dict(poller.poll())
        if pidfd in events:
            return 0  # QEMU is gone: nothing to guard
        if pipefd in events:
            try:
                data = os.read(pipefd, 64)
            except OSError:
                data = b""
            if not data:
                if _alive(pidfd):
                    _log(log, "parent process gone while QEMU still runs: stopping QEMU")
                    kill_process(pidfd, pgid, log)
                return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
