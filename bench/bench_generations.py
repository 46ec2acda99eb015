#!/usr/bin/env python3
"""Benchmark: the reference target on Xen 4.20 (Debian trixie) against Xen 4.17 (Debian bookworm).

Usage: ``bench/bench_generations.py [--runs N] [--timeout S]`` (no TARGET: both generations'
targets come from ``xen-ref-target show --debian bookworm|trixie``; build them first with
``xen-ref-target build --debian ...``).

Each generation's warm-start snapshot is built first (not timed, in a temporary cache). Then each
run measures, generation by generation (the order alternates from run to run, so that neither
always runs second):

* cold boot to dom0's shell with the harness (``QemuMachine.boot()``), and the minimal pexpect
  script's boot to ``login:`` on the same QEMU command line (``bench_boot.py``'s baseline);
* warm start to dom0's shell (restore from the snapshot, ``bench_warm.py``'s warm side);
* on that warm-started host, one guest lifecycle with the minimal script and one with the harness
  (``bench_guest.py``'s two sides: ``xl create -c`` to the guest's shell, ``cat /proc/cmdline``,
  detach, ``xl list``, destroy, ``xl list``; the harness adds its state and memory checks).

Reports the ratios 4.20 / 4.17 of the harness's cold boot, warm start and guest lifecycle, and
for each generation the ratios harness / minimal script of the cold boot and of the guest
lifecycle, all from the same run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pexpect

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_boot import time_baseline
from bench_guest import harness_lifecycle, script_lifecycle, settle
from benchlib import ROOT, report, target_parser
from xenqemu import QemuMachine, Xl, load_target

#: Debian release -> Xen generation, oldest first (the ratios are newer / older).
GENERATIONS = {"bookworm": "4.17", "trixie": "4.20"}


def generation_target(suite: str) -> tuple[str, str]:
    """The qemuboot.conf of ``suite``'s reference target and the config of a guest not started at boot."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "lib") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-m", "xenreftarget", "show", "--debian", suite],
                            capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise SystemExit(f"no {suite} reference target (build it with `xen-ref-target build --debian "
                         f"{suite}`):\n{result.stderr.strip()}")
    shown = json.loads(result.stdout)
    guest = next(g["config"] for g in shown["guests"] if not g.get("autostart"))
    return str(shown["qemuboot_conf"]), guest


def cold_boot(target: str, base: Path) -> float:
    """Seconds from creating the machine to dom0's shell answering, booting cold."""
    started = time.monotonic()
    with QemuMachine(load_target(target), base_dir=base) as machine:
        machine.boot()
        return time.monotonic() - started


def warm_start_and_guest(target: str, config: str, base: Path, cache: Path,
                         timeout: float) -> tuple[float, float, float]:
    """Warm start to dom0's shell, then one guest lifecycle by the script and one by the harness."""
    started = time.monotonic()
    with QemuMachine(load_target(target), base_dir=base, warm=True, snapshot_cache=cache) as machine:
        console = machine.boot()
        warm = time.monotonic() - started
        if machine.warm_result != "restored":
            raise SystemExit(f"{target}: the warm start did not restore the snapshot ({machine.warm_result})")
        name = Xl(console).config_name(config)
        settle(console)
        script = script_lifecycle(machine, config, name, timeout)[1]
        settle(console)
        harness = harness_lifecycle(console, config, name)[1]
    return warm, script, harness


def _minimal_boot(target: str, timeout: float) -> float | None:
    """The minimal script's boot to ``login:``, or None when ``login:`` never came (reported)."""
    try:
        return time_baseline(target, timeout)
    except pexpect.TIMEOUT:
        # Seen once with trixie's systemd 257 on QEMU's stdio pty (measured 2026-11-29): the
        # harness's socket console got its login: prompt, the script's pty none in 900 s.
        print(f"  minimal boot: no login: within {timeout:.0f}s (left out of the ratios)", flush=True)
        return None


def _measure(suite: str, target: str, config: str, base: Path, cache: Path, timeout: float,
             times: dict[str, dict[str, list[float]]]) -> None:
    side = times[suite]
    side["cold"].append(cold_boot(target, base))
    print(f"  {suite} (Xen {GENERATIONS[suite]}): cold {side['cold'][-1]:.2f}s", flush=True)
    minimal = _minimal_boot(target, timeout)
    if minimal is not None:
        side["minimal boot"].append(minimal)
        print(f"  {suite}: minimal boot {minimal:.2f}s", flush=True)
    warm, script, harness = warm_start_and_guest(target, config, base, cache, timeout)
    side["warm"].append(warm)
    side["script guest"].append(script)
    side["harness guest"].append(harness)
    print(f"  {suite}: warm {warm:.2f}s, guest lifecycle script {script:.2f}s harness {harness:.2f}s",
          flush=True)


def _report(times: dict[str, dict[str, list[float]]]) -> None:
    old, new = "bookworm", "trixie"
    labels = {s: f"Xen {v} ({s})" for s, v in GENERATIONS.items()}
    for key, what in (("cold", "cold boot to dom0 shell (harness)"), ("warm", "warm start to dom0 shell"),
                      ("harness guest", "one guest lifecycle (harness)")):
        report(f"generations_{key.replace(' ', '_')}", f"Xen 4.20 / Xen 4.17, {what}",
               labels[new], times[new][key], labels[old], times[old][key])
    for suite in (old, new):
        if not times[suite]["minimal boot"]:
            continue
        report(f"generations_boot_{suite}", f"harness cold boot to shell / minimal pexpect boot to login:, {labels[suite]}",
               "harness", times[suite]["cold"], "minimal pexpect script", times[suite]["minimal boot"])
    for suite in (old, new):
        report(f"generations_guest_{suite}", f"harness / minimal script, whole guest lifecycle, {labels[suite]}",
               "harness", times[suite]["harness guest"], "minimal pexpect script", times[suite]["script guest"])


def main() -> int:
    parser = target_parser(__doc__, runs=1)
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    if args.target:
        parser.error("no TARGET: the targets are both generations' reference targets")
    targets = {suite: generation_target(suite) for suite in GENERATIONS}
    base = Path(tempfile.mkdtemp(prefix="xq-bench-gen-"))
    times: dict[str, dict[str, list[float]]] = {
        s: {k: [] for k in ("cold", "minimal boot", "warm", "script guest", "harness guest")} for s in GENERATIONS}
    try:
        for suite, (target, _) in targets.items():  # not timed: each generation's snapshot
            with QemuMachine(load_target(target), base_dir=base, warm=True, snapshot_cache=base / suite) as machine:
                machine.boot()
                print(f"{suite}: snapshot {machine.warm_result}", flush=True)
        for i in range(args.runs):
            order = list(GENERATIONS) if i % 2 == 0 else list(reversed(GENERATIONS))
            print(f"run {i + 1}: {' then '.join(order)}", flush=True)
            for suite in order:
                target, config = targets[suite]
                _measure(suite, target, config, base, base / suite, args.timeout, times)
        _report(times)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
