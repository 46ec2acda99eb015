#!/usr/bin/env python3
"""Benchmark: ``xl create`` -> guest shell, and a guest's whole lifecycle, harness vs minimal script.

Usage: ``bench/bench_guest.py [TARGET] [--runs N] [--guest CFG]`` (TARGET: a qemuboot.conf or
YAML target; default: the reference target from ``xen-ref-target show``; CFG: a guest config in
dom0, default the first ``/etc/xen/*.cfg``).

Each run boots the host twice (not timed): once under a minimal pexpect script (QEMU with the
serial port on stdio, as in bench_boot.py), once with the harness (``QemuMachine.boot``).  On each
it times the same guest lifecycle:

1. ``xl create -c CFG`` until the guest's shell prompt (after logging in as root);
2. ``cat /proc/cmdline`` in the guest, detach with Ctrl-] (sent alone), ``xl list``,
   ``xl destroy``, ``xl list`` again -- the whole lifecycle, from step 1's start.

The minimal script only waits for prompts with regular expressions; the harness runs each step
through its console protocol (exit status and md5-checked output), waits for the running or
blocked state and checks that the domain is gone and its memory came back.  Prints raw times,
medians and the ratios harness/script for both figures.
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from pathlib import Path

import pexpect

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_boot import baseline_argv
from benchlib import report, resolve_target, target_parser
from xenqemu import QemuMachine, Xl, load_target

DOM0_PROMPT = r"root@qemuarm64:[^\n]*# "


def guest_prompt(name: str) -> str:
    """The guest's shell prompt (its hostname is the domain name on the reference target)."""
    return r"root@" + re.escape(name[:60]) + r"[^\n]*# |\n[^\n]*# "


def script_lifecycle(target_path: str, config: str, name: str, timeout: float) -> tuple[float, float]:
    """The minimal pexpect script: boot, log in, then the timed guest lifecycle."""
    with tempfile.TemporaryDirectory(prefix="xq-bench-guest-") as run_dir:
        argv = baseline_argv(target_path, Path(run_dir))
        child = pexpect.spawn(argv[0], argv[1:], timeout=timeout, encoding="utf-8", codec_errors="replace")
        try:
            child.expect("login:")
            child.sendline("root")
            child.expect(DOM0_PROMPT)
            started = time.monotonic()
            child.sendline(f"xl create -c {config}")
            child.expect("login:")
            child.sendline("root")
            child.expect(guest_prompt(name))
            shell = time.monotonic() - started
            child.sendline("cat /proc/cmdline")
            child.expect(guest_prompt(name))
            time.sleep(0.5)  # Ctrl-] must arrive on its own
            child.send("\x1d")
            child.expect(DOM0_PROMPT)
            child.sendline("xl list")
            child.expect(DOM0_PROMPT)
            child.sendline(f"xl destroy {name}")
            child.expect(DOM0_PROMPT)
            child.sendline("xl list")
            child.expect(DOM0_PROMPT)
            whole = time.monotonic() - started
            child.sendline("poweroff -f")
            child.expect(pexpect.EOF, timeout=60)
            return shell, whole
        finally:
            child.close(force=True)


def harness_lifecycle(target_path: str, config: str, name: str, base: Path) -> tuple[float, float]:
    """The harness: boot, then the same lifecycle through Xl and the console protocol."""
    with QemuMachine(load_target(target_path), base_dir=base) as machine:
        console = machine.boot()
        xl = Xl(console)
        started = time.monotonic()
        with xl.create(config, console=True) as guest:
            shell = time.monotonic() - started
            guest.run("cat /proc/cmdline", check=True)
        xl.list()
        xl.wait_state(name, ("r", "b"))
        xl.destroy(name)
        xl.list()
        whole = time.monotonic() - started
    return shell, whole


def main() -> int:
    parser = target_parser(__doc__, runs=3)
    parser.add_argument("--guest", default=None, help="guest config in dom0 (default: the first /etc/xen/*.cfg)")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    target = resolve_target(args.target)
    base = Path(tempfile.mkdtemp(prefix="xq-bench-guest-runs-"))
    with QemuMachine(load_target(target), base_dir=base) as machine:  # find the guest (not timed)
        console = machine.boot()
        config = args.guest or console.run("ls -1 /etc/xen/*.cfg | head -n 1", check=True).output.strip()
        name = Xl(console).config_name(config)
    print(f"guest {name} from {config}", flush=True)
    script_shell: list[float] = []
    script_whole: list[float] = []
    harness_shell: list[float] = []
    harness_whole: list[float] = []
    for i in range(args.runs):
        s, w = script_lifecycle(target, config, name, args.timeout)
        script_shell.append(s)
        script_whole.append(w)
        s, w = harness_lifecycle(target, config, name, base)
        harness_shell.append(s)
        harness_whole.append(w)
        print(f"run {i + 1}: create->shell script {script_shell[-1]:.2f}s harness {harness_shell[-1]:.2f}s; "
              f"lifecycle script {script_whole[-1]:.2f}s harness {harness_whole[-1]:.2f}s", flush=True)
    report("guest_shell", "harness / minimal script, xl create -> guest shell",
           "harness (Xl.create console=True)", harness_shell, "minimal pexpect script", script_shell)
    report("guest_lifecycle", "harness / minimal script, whole guest lifecycle",
           "harness (create -c, cmdline, detach, state, destroy + memory check)", harness_whole,
           "minimal pexpect script", script_whole)
    return 0


if __name__ == "__main__":
    sys.exit(main())
