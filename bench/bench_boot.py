#!/usr/bin/env python3
"""Benchmark: the harness's boot-to-shell time against a minimal pexpect boot-to-login script.

Usage: ``bench/bench_boot.py [TARGET] [--runs N]`` (TARGET: a qemuboot.conf or YAML target;
default: the reference target from ``xen-ref-target show``).

Both sides boot the same image with the same QEMU command line in the same run, alternating:

* baseline: ``pexpect.spawn`` of QEMU with the serial port on stdio (no QMP, not paused), timed
  until ``login:`` appears — the least a script can do;
* harness: ``QemuMachine(target).boot()`` — paused start, sockets, QMP ``cont``, every boot phase,
  login and the console protocol set up — timed until the shell answers.

Prints every raw time, both medians and the ratio harness/baseline (lower is better; the goal
is close to 1.0).  TCG boot times depend heavily on the machine's load: compare ratios, and
only within one run.
"""

from __future__ import annotations

import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pexpect

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import report, resolve_target, target_parser
from xenqemu.cmdline import RunPaths, build_argv
from xenqemu.machine import QemuMachine
from xenqemu.target import load_target

_HARNESS_OPTIONS = {"-qmp": 1, "-chardev": 1, "-serial": 1, "-monitor": 1, "-S": 0}


def baseline_argv(target_path: str, run_dir: Path) -> list[str]:
    """The harness's QEMU argv with its console/monitor plumbing replaced by ``-serial stdio``."""
    argv = build_argv(load_target(target_path), RunPaths.in_dir(run_dir))
    out: list[str] = []
    skip = 0
    for arg in argv:
        if skip:
            skip -= 1
            continue
        if arg in _HARNESS_OPTIONS:
            skip = _HARNESS_OPTIONS[arg]
            continue
        out.append(arg)
    return out + ["-serial", "stdio", "-monitor", "none"]


#: dom0's login prompt: a line Xen did not prefix (a dom0less guest's reads "(XEN) DOM1: ... login:")
DOM0_LOGIN = re.compile(rb"(?m)^(?!\(XEN\)|\(d\d+\))[^\n]*login:")


def time_baseline(target_path: str, timeout: float) -> float:
    """Seconds from spawning QEMU to dom0's first ``login:`` on its serial console."""
    with tempfile.TemporaryDirectory(prefix="xq-bench-") as run_dir:
        argv = baseline_argv(target_path, Path(run_dir))
        started = time.monotonic()
        child = pexpect.spawn(argv[0], argv[1:], timeout=timeout)
        try:
            child.expect(DOM0_LOGIN)
            return time.monotonic() - started
        finally:
            child.close(force=True)


def time_harness(target_path: str, base: Path) -> tuple:
    """Seconds from creating the QemuMachine to a shell answering, and to the login prompt."""
    target = load_target(target_path)
    seen: dict = {}
    started = time.monotonic()

    def progress(phase: str, description: str, elapsed: float) -> None:
        seen.setdefault(phase, time.monotonic() - started)

    with QemuMachine(target, base_dir=base, progress=progress) as machine:
        machine.boot()
        return time.monotonic() - started, seen["login_prompt"]


def main() -> int:
    parser = target_parser(__doc__, runs=3)
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    args.target = resolve_target(args.target, args.arch)
    base = Path(tempfile.mkdtemp(prefix="xq-bench-runs-"))
    baseline: list[float] = []
    harness: list[float] = []
    harness_login: list[float] = []
    for i in range(args.runs):
        # alternate which side goes first, so that neither always follows the other's teardown
        if i % 2:
            shell, login = time_harness(args.target, base)
            baseline.append(time_baseline(args.target, args.timeout))
        else:
            baseline.append(time_baseline(args.target, args.timeout))
            shell, login = time_harness(args.target, base)
        harness.append(shell)
        harness_login.append(login)
        print(f"run {i + 1}: baseline boot-to-login {baseline[-1]:.2f}s, harness boot-to-login "
              f"{login:.2f}s, boot-to-shell {shell:.2f}s", flush=True)
    # where the difference comes from: the same boot (to login:) vs login + protocol set-up
    print(f"harness login: prompt median {statistics.median(harness_login):.2f}s raw "
          f"{[round(x, 2) for x in harness_login]}; login + protocol set-up median "
          f"{statistics.median([s - l for s, l in zip(harness, harness_login)]):.2f}s")
    # dom0's boot time is bimodal (the kernel reports the bridge's carrier up to a second late),
    # so the ratio of medians moves with how the runs fall into the two modes; the ratio of the
    # fastest runs compares like with like and shows the harness's own cost
    fastest = min(harness) / min(baseline)
    print(f"fastest runs: harness {min(harness):.2f}s / baseline {min(baseline):.2f}s = {fastest:.3f}")
    report("boot", "harness cold boot to shell / minimal pexpect boot to login:",
           "harness (QemuMachine.boot, to a shell answering)", harness,
           "baseline (minimal pexpect, to login:)", baseline, goal=1.05,
           extra={"harness_login_median": round(statistics.median(harness_login), 3),
                  "setup_median": round(statistics.median([s - l for s, l in zip(harness, harness_login)]), 3),
                  "fastest_ratio": round(fastest, 3)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
