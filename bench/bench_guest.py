#!/usr/bin/env python3
"""Benchmark: ``xl create`` -> guest shell, and a guest's whole lifecycle, harness vs minimal script.

Usage: ``bench/bench_guest.py [TARGET] [--runs N] [--guest CFG] [--warm]`` (TARGET: a
qemuboot.conf or YAML target; default: the reference target from ``xen-ref-target show``; CFG: a
guest config in dom0, default the first ``/etc/xen/*.cfg`` whose domain is not already running).

The host boots once (not timed; ``--warm`` starts it from the harness's snapshot).  Then, on that
same machine and its one serial console, each run times the same guest lifecycle twice, once
with a minimal pexpect script and once with the harness, in alternating order (ABBA), so that
both sides see the same machine and the same load within seconds of each other:

1. ``xl create -c CFG`` until the guest's shell prompt (after logging in as root);
2. ``cat /proc/cmdline`` in the guest, detach with Ctrl-] (sent alone), ``xl list``,
   ``xl destroy``, ``xl list`` again -- the whole lifecycle, from step 1's start.

The minimal script (``pexpect`` on a duplicate of the console's socket, as a script on the
serial line would) only waits for prompts with regular expressions; the harness runs each step
through its console protocol (exit status and md5-checked output), checks the running or
blocked state (in the ``xl list`` the script also runs), and checks that the domain is gone and
its memory came back (``xl info`` before and after, sharing round trips with ``xl destroy`` and
``xl list``).  Before each side (not timed) dom0 finishes the previous side's teardown (its
hotplug scripts), so that neither side's guest starts next to the other's clean-up.  Prints raw times, medians, the ratios harness/script of the medians and, as a
check that does not depend on how the load moved, the median of the per-run ratios.
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pexpect
import pexpect.fdpexpect

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import report, resolve_target, target_parser
from xenqemu import ConsoleChannel, QemuMachine, Xl, load_target

DOM0_PROMPT = r"root@qemuarm64:[^\n]*# "


def guest_prompt(name: str) -> str:
    """The guest's shell prompt (its hostname is the domain name on the reference target)."""
    return r"root@" + re.escape(name[:60]) + r"[^\n]*# |\n[^\n]*# "


def script_lifecycle(machine: QemuMachine, config: str, name: str, timeout: float) -> tuple[float, float]:
    """The minimal pexpect script on the booted machine's console: the timed guest lifecycle."""
    assert machine.stream is not None
    machine.stream.drain()
    child = pexpect.fdpexpect.fdspawn(os.dup(machine.stream.spawn.child_fd), timeout=timeout, encoding="utf-8",
                                      codec_errors="replace")
    try:
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
        return shell, time.monotonic() - started
    finally:
        child.close()


def harness_lifecycle(console: ConsoleChannel, config: str, name: str) -> tuple[float, float]:
    """The harness: the same lifecycle through Xl and the console protocol.

    The same ``xl`` invocations as the script plus two ``xl info`` for the memory check: the
    state check is the script's first ``xl list``, ``Xl.destroy`` runs ``xl info`` with
    ``xl destroy`` and ``xl list`` with ``xl info`` (one console round trip each).
    """
    console.sync()  # the script left the console; not timed
    xl = Xl(console)
    started = time.monotonic()
    with xl.create(config, console=True, name=name) as guest:
        shell = time.monotonic() - started
        guest.run("cat /proc/cmdline", check=True)
    domain = xl.wait_state(name, ("r", "b"))
    xl.destroy(name, domain=domain)
    return shell, time.monotonic() - started


#: dom0's work left over from the last side: the hotplug scripts that tear the destroyed guest's
#: disk and vif down still run after ``xl destroy`` returned, and would slow the next side's guest.
SETTLE = ("i=0; while pgrep -f /etc/xen/scripts/ >/dev/null && [ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done; "
          "sleep 1")


def settle(console: ConsoleChannel) -> None:
    """Wait (not timed) until dom0 has finished the previous side's teardown, the same for each side."""
    console.sync()
    console.run(SETTLE, timeout=120, check=True)


def main() -> int:
    parser = target_parser(__doc__, runs=3)
    parser.add_argument("--guest", default=None, help="guest config in dom0 (default: the first /etc/xen/*.cfg whose "
                        "domain is not running: not autostarted, not dom0less)")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--warm", action="store_true", help="start the host from the harness's snapshot")
    args = parser.parse_args()
    target = resolve_target(args.target, args.arch)
    base = Path(tempfile.mkdtemp(prefix="xq-bench-guest-runs-"))
    times: dict[str, list[tuple[float, float]]] = {"script": [], "harness": []}
    with QemuMachine(load_target(target), base_dir=base, warm=args.warm) as machine:  # not timed
        console = machine.boot()
        xl = Xl(console)
        config, name = (args.guest, xl.config_name(args.guest)) if args.guest else xl.idle_configs()[0]
        print(f"guest {name} from {config}", flush=True)
        for i in range(args.runs):
            order = ("script", "harness") if i % 2 == 0 else ("harness", "script")
            for side in order:
                settle(console)
                times[side].append(script_lifecycle(machine, config, name, args.timeout) if side == "script"
                                   else harness_lifecycle(console, config, name))
            (s_shell, s_whole), (h_shell, h_whole) = times["script"][-1], times["harness"][-1]
            print(f"run {i + 1} ({' then '.join(order)}): create->shell script {s_shell:.2f}s harness "
                  f"{h_shell:.2f}s; lifecycle script {s_whole:.2f}s harness {h_whole:.2f}s", flush=True)
    paired = [h[1] / s[1] for h, s in zip(times["harness"], times["script"])]
    report("guest_shell", "harness / minimal script, xl create -> guest shell",
           "harness (Xl.create console=True)", [h[0] for h in times["harness"]], "minimal pexpect script",
           [s[0] for s in times["script"]])
    report("guest_lifecycle", "harness / minimal script, whole guest lifecycle",
           "harness (create -c, cmdline, detach, state, destroy + memory check)", [h[1] for h in times["harness"]],
           "minimal pexpect script", [s[1] for s in times["script"]], goal=1.05,
           extra={"paired_ratio_median": round(statistics.median(paired), 4)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
