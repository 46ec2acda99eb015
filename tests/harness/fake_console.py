#!/usr/bin/env python3
"""A stand-in for ``xl console``: a nested "guest" shell left with Ctrl-] sent on its own.

Like xenconsole it puts its terminal in raw mode and relays bytes between the terminal and the
guest console (here: a shell on its own pseudo-terminal).  A read that is exactly one 0x1d byte
(Ctrl-] alone) detaches: the guest shell is hung up and the program exits, returning the outer
shell its prompt.  Ctrl-] glued to other bytes is passed on, as xenconsole does.  With
``--login`` the guest first shows ``guest login:`` and wants a user name (no password).
This is test equipment for tests/harness, not part of the harness.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import sys
import termios
import tty


def main() -> int:
    login = "--login" in sys.argv[1:]
    shell = [a for a in sys.argv[1:] if a != "--login"] or ["sh", "-i"]
    old = termios.tcgetattr(0) if os.isatty(0) else None
    if old is not None:
        tty.setraw(0)
    try:
        if login:
            os.write(1, b"\r\nFake guest 1.0 hvc0\r\n\r\nguest login: ")
            name = b""
            while not name.endswith((b"\r", b"\n")):
                name += os.read(0, 1)
            os.write(1, name + b"\n")
        pid, master = pty.fork()
        if pid == 0:
            os.environ["PS1"] = "guest# "
            os.execvp(shell[0], shell)
        while True:
            ready, _, _ = select.select([0, master], [], [])
            if master in ready:
                try:
                    data = os.read(master, 4096)
                except OSError:
                    data = b""
                if not data:
                    break
                os.write(1, data)
            if 0 in ready:
                data = os.read(0, 4096)
                if not data or data == b"\x1d":
                    break
                os.write(master, data)
        try:
            os.kill(pid, signal.SIGHUP)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
    finally:
        if old is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, old)
    return 0


if __name__ == "__main__":
    sys.exit(main())
