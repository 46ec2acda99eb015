#!/usr/bin/env python3
"""Benchmark: QEMU start to a dom0less guest's shell, to dom0's shell and to an xl-created guest's shell.

Usage: ``bench/bench_dom0less.py [TARGET] [--runs N] [--guest CFG]`` (TARGET: a qemuboot.conf with
``QB_XEN_DOM0LESS``, default the reference target from ``xen-ref-target show``; CFG: the guest
config in dom0 that ``xl create -c`` starts, default the reference target's third-party guest).

Each run is one boot, a minimal pexpect script on the serial line (the QEMU command line of
``bench_boot.py``: the harness's, with the serial port on stdio), and all three times are read in
that same boot, from spawning QEMU:

* **dom0less**: as soon as the first dom0less domain's ``rcS`` line shows on its virtual UART
  (Xen prints it prefixed ``(XEN) DOM1:``), Ctrl-a three times moves the serial input to it, a
  newline brings its ``login:``, ``root`` logs in, until its shell prompt; then the input goes
  back to dom0 (Ctrl-a three times, twice);
* **dom0**: dom0's ``login:`` on hvc0, ``root``, until dom0's shell prompt;
* **xl guest**: ``xl create -c CFG`` from dom0's shell, ``root``, until the guest's prompt;
* **no dom0** (a second boot, when the target has ``xen-dom0less-only-qemuarm64.qemuboot.conf``):
  Xen starts only the guest; QEMU start to its shell.

Prints the raw times, the medians and the ratios dom0less/dom0 and dom0less/xl guest (lower is
better: a dom0less guest should be the fastest path to a running guest).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

import pexpect

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_boot import baseline_argv
from benchlib import report, resolve_target, target_parser
from xenqemu.target import load_target
from xenreftarget.dom0less import NO_DOM0_QEMUBOOT_CONF

SWITCH = "\x01\x01\x01"
DOM0_PROMPT = r"root@qemuarm64:[^\r\n]*# "
DEFAULT_GUEST = "/etc/xen/xen-guest-bundle-thirdparty-guest.cfg"


def _console_log(name: str) -> TextIO | None:
    """The serial console's copy in ``$XEN_BENCH_LOG_DIR/<name>.log`` (to see where a run waits)."""
    folder = os.environ.get("XEN_BENCH_LOG_DIR")
    return open(os.path.join(folder, f"{name}.log"), "w", encoding="utf-8") if folder else None


def _dom0less_shell(child: pexpect.spawn, name: str, started: float) -> float:
    child.expect(r"DOM1: rcS: guest ready")
    child.send(SWITCH)
    child.expect(r"Serial input to DOM1")
    time.sleep(0.3)
    child.send("\n")  # Xen holds a line without newline (the prompt) of an unfocused domain
    child.expect(re.escape(name) + r" login: ")
    child.send("root\n")
    child.expect(re.escape(name) + r":[^\r\n]*# ")  # Xen may cut "root@" with "(XEN) "
    shell = time.monotonic() - started
    for _ in range(2):  # DOM1 -> Xen -> dom0
        child.send(SWITCH)
        time.sleep(0.3)
    child.expect(r"Serial input to DOM0")
    return shell


def one_boot(target_path: str, dom0less_name: str, guest_config: str, timeout: float) -> tuple[float, float, float]:
    """Seconds from spawning QEMU to the dom0less guest's, dom0's and the xl guest's shell."""
    with tempfile.TemporaryDirectory(prefix="xq-bench-") as run_dir:
        argv = baseline_argv(target_path, Path(run_dir))
        started = time.monotonic()
        child = pexpect.spawn(argv[0], argv[1:], timeout=timeout, encoding="utf-8", codec_errors="replace")
        child.logfile_read = _console_log("with-dom0")
        try:
            dom0less = _dom0less_shell(child, dom0less_name, started)
            child.expect(r"qemuarm64 login:")
            child.send("root\n")
            child.expect(DOM0_PROMPT)
            dom0 = time.monotonic() - started
            child.send(f"xl create -c {guest_config}\n")
            child.expect(r"login:")
            child.send("root\n")
            child.expect(r"\n[^\r\n]*# ")
            guest = time.monotonic() - started
            return dom0less, dom0, guest
        finally:
            child.close(force=True)


def no_dom0_boot(target_path: str, name: str, timeout: float) -> float:
    """Seconds from spawning QEMU to the guest's shell when Xen boots it with no dom0 at all."""
    with tempfile.TemporaryDirectory(prefix="xq-bench-") as run_dir:
        argv = baseline_argv(target_path, Path(run_dir))
        started = time.monotonic()
        child = pexpect.spawn(argv[0], argv[1:], timeout=timeout, encoding="utf-8", codec_errors="replace")
        child.logfile_read = _console_log("no-dom0")
        try:
            child.expect(r"DOM1: rcS: guest ready")
            child.send(SWITCH)
            child.expect(r"Serial input to DOM1")
            time.sleep(0.3)
            child.send("\n")  # Xen holds a line without newline (the prompt) of an unfocused domain
            child.expect(re.escape(name) + r" login: ")
            child.send("root\n")
            child.expect(re.escape(name) + r":[^\r\n]*# ")  # Xen may cut "root@" with "(XEN) "
            return time.monotonic() - started
        finally:
            child.close(force=True)


def main() -> int:
    parser = target_parser(__doc__, runs=3)
    parser.add_argument("--guest", default=DEFAULT_GUEST, help=f"config for xl create -c (default {DEFAULT_GUEST})")
    parser.add_argument("--timeout", type=float, default=1200.0)
    args = parser.parse_args()
    args.target = resolve_target(args.target)
    names = load_target(args.target).variables.get("QB_XEN_DOM0LESS", "").split()
    if not names:
        print(f"{args.target} has no dom0less domain (QB_XEN_DOM0LESS): nothing to measure", file=sys.stderr)
        return 2
    no_dom0_conf = Path(args.target).parent / NO_DOM0_QEMUBOOT_CONF
    runs: list[tuple[float, float, float]] = []
    solo: list[float] = []
    for i in range(args.runs):
        runs.append(one_boot(args.target, names[0], args.guest, args.timeout))
        if no_dom0_conf.is_file():
            solo.append(no_dom0_boot(str(no_dom0_conf), names[0], args.timeout))
        print(f"run {i + 1}: QEMU start to shell: dom0less guest {runs[-1][0]:.2f}s, dom0 {runs[-1][1]:.2f}s, "
              f"xl-created guest {runs[-1][2]:.2f}s" + (f", guest with no dom0 {solo[-1]:.2f}s" if solo else ""),
              flush=True)
    dom0less, dom0, guest = ([r[k] for r in runs] for k in range(3))
    report("dom0less-vs-xl", "dom0less guest shell / xl-created guest shell (QEMU start to shell, same boot)",
           "dom0less guest", dom0less, "xl-created guest", guest)
    report("dom0less-vs-dom0", "dom0less guest shell / dom0 shell (QEMU start to shell, same boot)",
           "dom0less guest", dom0less, "dom0", dom0)
    if solo:
        report("no-dom0-vs-xl", "guest shell with no dom0 (true dom0less) / xl-created guest shell",
               "guest, no dom0", solo, "xl-created guest", guest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
