#!/usr/bin/env python3
"""Benchmark: planning a bundle with a 100 MB config of bad lines vs a 100 MB valid config.

Both files are ``xen-guest-bundle*.cfg`` files in a deploy directory, and each run is
``xenbundle.plan_bundle`` in a fresh child process (read, decode, parse, validate, and
for the bad file the error report), so that every run's peak RSS is its own:

* ours: ``Bad\\n`` repeated to the size (every line a lexical error; the report lists
  the first 20 problems and counts the rest);
* baseline: a valid guest config (name, memory, kernel, extra, a disk list across two
  lines, vif, comments) repeated to the same size (the last assignment of each key wins).

Runs alternate between the two, so both see the same machine load.  Prints each run's
time and peak RSS (``VmHWM``), the medians and the ratios ours/baseline, and the
``RESULT`` line that ``run_all.py`` collects; the CPU time of each side is printed
too (on a busy machine it varies less than the wall time).
Usage: ``PYTHONPATH=lib python3 bench/bench_bad_config.py [--runs 3] [--size-mb 100]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "lib"))
sys.path.insert(0, str(HERE))

from benchlib import report

MiB = 1 << 20

VALID_BLOCK = """# web server guest
name = "web"
memory = 512
vcpus = 2
kernel = "Image"
extra = "root=/dev/xvda ro console=hvc0 ip=dhcp"
disk = [ 'file:web.ext4,xvda,rw',
         'phy:/dev/vg/data,xvdb,w' ]
vif = [ 'bridge=xenbr0' ]
on_crash = "destroy"
"""
BAD_LINE = "Bad\n"

# The child: plan a bundle from the deploy dir, report time, peak RSS and the outcome.
CHILD = r"""
import json, sys, time
from xenbundle import BundleError, plan_bundle
rootfs, deploy = sys.argv[1:3]
start, cpu = time.perf_counter(), time.process_time()
try:
    plan = plan_bundle(rootfs, deploy)
    outcome = {"guests": len(plan.guests), "message_bytes": 0, "problems": 0}
except BundleError as err:
    outcome = {"guests": 0, "message_bytes": len(str(err)), "problems": len(err.problems) + err.more}
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
hwm = 0
with open("/proc/self/status") as status:
    for line in status:
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) * 1024
print(json.dumps(dict(outcome, seconds=seconds, cpu_seconds=cpu, peak_rss=hwm)))
"""


def make_deploy(base: Path, name: str, unit: str, size: int) -> Path:
    """A deploy dir with one config of ``unit`` repeated to ``size`` bytes, plus its files."""
    deploy = base / name
    deploy.mkdir()
    (deploy / "Image").write_bytes(b"kernel" * 100)
    (deploy / "web.ext4").write_bytes(b"disk" * 100)
    block = unit * max(1, (4 * MiB) // len(unit))
    with open(deploy / "xen-guest-bundle-big.cfg", "w") as f:
        written = 0
        while written + len(block) <= size:
            f.write(block)
            written += len(block)
        f.write(unit * ((size - written) // len(unit)))
    return deploy


def run_child(rootfs: Path, deploy: Path) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(HERE.parent / "lib"))
    out = subprocess.run([sys.executable, "-c", CHILD, str(rootfs), str(deploy)], env=env,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


def idle_rss() -> int:
    """Peak RSS of a child that imports xenbundle and plans nothing (the interpreter's share)."""
    env = dict(os.environ, PYTHONPATH=str(HERE.parent / "lib"))
    code = ("import xenbundle.plan\n"
            "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')][0])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    return int(out.strip()) * 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--runs", type=int, default=3, help="runs of each (default 3)")
    ap.add_argument("--size-mb", type=float, default=100.0, help="config size in MiB (default 100)")
    args = ap.parse_args()
    size = int(args.size_mb * MiB)

    with tempfile.TemporaryDirectory(prefix="bench-badcfg-", dir=os.environ.get("TMPDIR")) as tmp:
        base = Path(tmp)
        rootfs = base / "rootfs"
        rootfs.mkdir()
        bad = make_deploy(base, "bad", BAD_LINE, size)
        valid = make_deploy(base, "valid", VALID_BLOCK, size)
        runs: dict[str, list[dict[str, float]]] = {"bad": [], "valid": []}
        for i in range(args.runs):
            for name, deploy in (("bad", bad), ("valid", valid)):
                result = run_child(rootfs, deploy)
                runs[name].append(result)
                print(f"run {i + 1} {name}: {result['seconds']:.2f} s ({result['cpu_seconds']:.2f} s "
                      f"CPU), peak RSS "
                      f"{result['peak_rss'] / MiB:.0f} MiB, problems {result['problems']}, "
                      f"message {result['message_bytes']} bytes", flush=True)
        interpreter = idle_rss()

    rss = {name: statistics.median(r["peak_rss"] for r in results) for name, results in runs.items()}
    cpu = {name: statistics.median(r["cpu_seconds"] for r in results) for name, results in runs.items()}
    above = {name: rss[name] - interpreter for name in rss}
    print(f"config size {size / MiB:.0f} MiB; interpreter alone {interpreter / MiB:.0f} MiB peak RSS")
    print(f"median CPU time: bad {cpu['bad']:.2f} s, valid {cpu['valid']:.2f} s, "
          f"ratio {cpu['bad'] / cpu['valid']:.3f}")
    print(f"median peak RSS: bad {rss['bad'] / MiB:.0f} MiB, valid {rss['valid'] / MiB:.0f} MiB, "
          f"ratio {rss['bad'] / rss['valid']:.3f}; above the interpreter: bad "
          f"{above['bad'] / MiB:.0f} MiB ({above['bad'] / size:.2f} x the file), valid "
          f"{above['valid'] / MiB:.0f} MiB ({above['valid'] / size:.2f} x the file)")
    report("bad_config", f"plan_bundle, {size / MiB:.0f} MiB config: bad lines / valid (time)",
           "bad (Bad lines)", [r["seconds"] for r in runs["bad"]],
           "valid config", [r["seconds"] for r in runs["valid"]],
           extra={"size_mib": round(size / MiB), "interpreter_rss_mib": round(interpreter / MiB),
                  "cpu": {"bad_s": round(cpu["bad"], 2), "valid_s": round(cpu["valid"], 2),
                          "ratio": round(cpu["bad"] / cpu["valid"], 3)},
                  "rss": {"bad_mib": round(rss["bad"] / MiB), "valid_mib": round(rss["valid"] / MiB),
                          "ratio": round(rss["bad"] / rss["valid"], 3)},
                  "message_bytes": max(r["message_bytes"] for r in runs["bad"]),
                  "problems": runs["bad"][0]["problems"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
