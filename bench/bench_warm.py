#!/usr/bin/env python3
"""Benchmark: warm start to dom0's shell against a cold boot to dom0's shell (same target, same run).

Usage: ``bench/bench_warm.py [TARGET] [--runs N] [--snapshot-cache DIR]`` (TARGET: a
qemuboot.conf or YAML target; default: the reference target from ``xen-ref-target show``).

First the snapshot is built in a private cache folder (not timed; the folder is removed at the
end unless ``--snapshot-cache`` names one).  Then, alternating N times:

* cold: ``QemuMachine(target).boot()`` -- start QEMU, every boot phase, login, protocol set-up;
* warm: ``QemuMachine(target, warm=True).boot()`` -- key check (memoised checksums), copy of the
  snapshot's overlay, QEMU start with ``-loadvm``, console re-attached, dom0's clock set.

Both are timed from creating the QemuMachine to ``boot()`` returning a shell that answers
(stopping the machine is not timed).  Prints raw times, medians and the ratio warm/cold
(goal <= 0.15).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import report, resolve_target, target_parser
from xenqemu import QemuMachine, load_target


def timed_boot(target_path: str, base: Path, **options: object) -> tuple:
    """Seconds from creating the machine to its shell answering, and how it started."""
    started = time.monotonic()
    machine = QemuMachine(load_target(target_path), base_dir=base, **options)  # type: ignore[arg-type]
    with machine:
        machine.boot()
        elapsed = time.monotonic() - started
        result = machine.warm_result
    return elapsed, result


def main() -> int:
    parser = target_parser(__doc__, runs=5)
    parser.add_argument("--snapshot-cache", default=None, help="cache folder (default: a temporary one)")
    args = parser.parse_args()
    target = resolve_target(args.target, args.arch)
    base = Path(tempfile.mkdtemp(prefix="xq-bench-warm-"))
    cache = Path(args.snapshot_cache) if args.snapshot_cache else base / "snapshots"
    try:
        build_time, result = timed_boot(target, base, warm=True, snapshot_cache=cache)
        print(f"snapshot ready ({result}) in {build_time:.1f}s", flush=True)
        cold: list[float] = []
        warm: list[float] = []
        for i in range(args.runs):
            cold.append(timed_boot(target, base)[0])
            seconds, result = timed_boot(target, base, warm=True, snapshot_cache=cache)
            if result != "restored":
                raise SystemExit(f"run {i + 1}: the warm start did not restore the snapshot ({result})")
            warm.append(seconds)
            print(f"run {i + 1}: cold {cold[-1]:.2f}s, warm {warm[-1]:.2f}s", flush=True)
        report("warm_start", "warm start to dom0 shell / cold boot to dom0 shell",
               "warm (restore from snapshot)", warm, "cold (full boot)", cold, goal=0.15,
               extra={"snapshot_build_s": round(build_time, 2)})
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
