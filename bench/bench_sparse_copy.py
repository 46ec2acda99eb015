#!/usr/bin/env python3
"""Benchmark: bundling a 2 GiB sparse guest disk vs ``cp --sparse=always``.

Creates a 2 GiB sparse file with a few MiB of data scattered in it, then, N times
each (interleaved, so both see the same machine load):

* ours: ``xenbundle.bundle_guests`` into a fresh rootfs (plan, sparse copy, config
  rewrite, rename) for a guest with that disk and a small kernel;
* baseline: ``cp --sparse=always`` of the same disk into a fresh directory.

Prints the raw medians (seconds, allocated bytes) and the ratios ours/cp.
Usage: ``PYTHONPATH=lib python3 bench/bench_sparse_copy.py [-n 5] [--size-gib 2]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import report
from xenbundle import bundle_guests

MiB = 1 << 20


def make_disk(path: Path, size: int, data_mib: int) -> None:
    """A sparse file of ``size`` bytes with ``data_mib`` 1 MiB random chunks spread over it."""
    with open(path, "wb") as f:
        f.truncate(size)
        step = size // data_mib
        for i in range(data_mib):
            f.seek(i * step)
            f.write(os.urandom(MiB))


def run_ours(deploy: Path, work: Path) -> tuple:
    rootfs = work / "rootfs"
    rootfs.mkdir()
    start = time.perf_counter()
    bundle_guests(str(rootfs), str(deploy), "guest.rootfs.ext4:Image", log=lambda m: None)
    elapsed = time.perf_counter() - start
    disk = rootfs / "var/lib/xen/images/guest.rootfs.ext4"
    return elapsed, disk.stat().st_blocks * 512


def run_cp(deploy: Path, work: Path) -> tuple:
    dest = work / "cp"
    dest.mkdir()
    start = time.perf_counter()
    subprocess.run(["cp", "--sparse=always", str(deploy / "guest.rootfs.ext4"), str(dest)],
                   check=True)
    elapsed = time.perf_counter() - start
    return elapsed, (dest / "guest.rootfs.ext4").stat().st_blocks * 512


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--runs", type=int, default=5, help="runs of each (default 5)")
    ap.add_argument("--size-gib", type=float, default=2.0, help="disk size in GiB (default 2)")
    ap.add_argument("--data-mib", type=int, default=8, help="MiB of data in it (default 8)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-sparse-", dir=os.environ.get("TMPDIR")) as tmp:
        tmpdir = Path(tmp)
        deploy = tmpdir / "deploy"
        deploy.mkdir()
        size = int(args.size_gib * (1 << 30))
        make_disk(deploy / "guest.rootfs.ext4", size, args.data_mib)
        (deploy / "Image").write_bytes(os.urandom(64 * 1024))
        src_alloc = (deploy / "guest.rootfs.ext4").stat().st_blocks * 512

        ours_t, ours_a, cp_t, cp_a = [], [], [], []
        for i in range(args.runs):
            for runner, times, allocs in ((run_ours, ours_t, ours_a), (run_cp, cp_t, cp_a)):
                work = tmpdir / f"run-{runner.__name__}-{i}"
                work.mkdir()
                t, a = runner(deploy, work)
                times.append(t)
                allocs.append(a)
                shutil.rmtree(work)

    mt, mc = statistics.median(ours_t), statistics.median(cp_t)
    at, ac = statistics.median(ours_a), statistics.median(cp_a)
    print(f"sparse copy benchmark: {size / (1 << 30):.2f} GiB disk, {args.data_mib} MiB data "
          f"(source allocated {src_alloc} bytes), {args.runs} runs each")
    print(f"  median time      ours (bundle_guests): {mt:.4f} s   cp --sparse=always: {mc:.4f} s")
    print(f"  median allocated ours: {int(at)} bytes   cp: {int(ac)} bytes")
    print(f"  ratio ours/cp    time: {mt / mc:.2f}   allocated: {at / ac if ac else float('nan'):.3f}")
    report("sparse_copy", "bundle_guests / cp --sparse=always (time)", "ours (bundle_guests)", ours_t,
           "cp --sparse=always", cp_t,
           extra={"allocated": {"ours_median": int(at), "cp_median": int(ac), "source": src_alloc,
                                "ratio": round(at / ac, 4) if ac else None},
                  "disk_gib": args.size_gib, "data_mib": args.data_mib})
    return 0


if __name__ == "__main__":
    sys.exit(main())
