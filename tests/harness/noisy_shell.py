#!/usr/bin/env python3
"""A real shell behind a relay that injects console noise, like a serial line under Xen.

Usage: ``noisy_shell.py [--seed N] [--rate R] [--quiet] -- PROGRAM [ARGS...]``

The program (a shell) runs on its own pseudo-terminal; this relay copies our stdin to it and its
output to our stdout.  At random moments it writes noise into the output stream: whole lines,
``(XEN) ...`` hypervisor lines, kernel-style ``[  12.345678] ...`` lines, and "partial" lines
written in two pieces with a pause in between.  Noise may land in the middle of a line of the
shell's output (as Xen's messages do on a shared UART) but a noise line is never interrupted by
shell output (the UART writer holds its lock for a whole message).

With ``--quiet`` no noise is written (a plain relay).  The relay exits when the program exits.
This is test equipment for tests/harness, not part of the harness.
"""

from __future__ import annotations

import argparse
import os
import pty
import random
import select
import signal
import sys
import termios
import time
import tty


def noise_line(rng: random.Random) -> bytes:
    """One line of noise of a random kind."""
    kind = rng.randrange(4)
    if kind == 0:
        text = f"(XEN) d0v{rng.randrange(4)} Unhandled SMC/HVC: {rng.randrange(1 << 32):#x}"
    elif kind == 1:
        text = f"[  {rng.uniform(0, 9999):10.6f}] xen-blkback: backend/vbd/{rng.randrange(9)}/51712: ready"
    elif kind == 2:
        text = "noise " + "".join(rng.choice("abcxyz0123 :'\"$") for _ in range(rng.randrange(1, 60)))
    else:
        text = f"(XEN) grant_table.c:{rng.randrange(2000)}: d{rng.randrange(3)}: mapping failed ok? 0 1 E:"
    return text.encode() + b"\n"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--rate", type=float, default=0.3, help="probability of noise per output chunk")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("program", nargs="+")
    args = parser.parse_args()
    rng = random.Random(args.seed)

    pid, master = pty.fork()
    if pid == 0:
        os.execvp(args.program[0], args.program)
    if os.isatty(0):
        tty.setraw(0, termios.TCSANOW)
    out = sys.stdout.buffer

    def write(data: bytes) -> None:
        out.write(data)
        out.flush()

    def emit_noise() -> None:
        line = noise_line(rng)
        if rng.random() < 0.3:  # a partial line: first half, a pause, the rest
            cut = rng.randrange(1, len(line))
            write(line[:cut])
            time.sleep(rng.uniform(0, 0.05))
            write(line[cut:])
        else:
            write(line)

    next_idle_noise = time.monotonic() + rng.uniform(0.05, 0.6)
    while True:
        timeout = max(0.0, next_idle_noise - time.monotonic())
        try:
            ready, _, _ = select.select([0, master], [], [], timeout)
        except InterruptedError:
            continue
        if master in ready:
            try:
                data = os.read(master, 4096)
            except OSError:
                data = b""
            if not data:
                break
            if not args.quiet and rng.random() < args.rate and len(data) > 1:
                cut = rng.randrange(1, len(data))
                write(data[:cut])
                emit_noise()
                write(data[cut:])
            else:
                write(data)
        if 0 in ready:
            data = os.read(0, 4096)
            if not data:
                break
            os.write(master, data)
        if time.monotonic() >= next_idle_noise:
            if not args.quiet:
                emit_noise()
            next_idle_noise = time.monotonic() + rng.uniform(0.05, 0.6)
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
