#!/usr/bin/env python3
"""Benchmark: the OEQA suite ``xen`` through oe-core's runner vs the harness, same target, same run.

Usage: ``bench/bench_oeqa.py [TARGET] [--release wrynose] [--runs N] [--qemuboot FILE] [--no-runqemu]``

TARGET is accepted for ``run_all.py`` and ignored: the target here is the reference target
(``xen-ref-target build``, ``$XEN_REF_CACHE``) booted with the qemuboot.conf rendered from the
layer's recipe (``scripts/oe/render-qemuboot --reftarget``; ``--qemuboot`` to pick one), so
every side boots the very same QEMU configuration (CPU count, memory, Xen and dom0 command
lines).  Needs an oe-core environment (``/opt/oe-env/<release>``).  Each run, one after the other:

1. **OEQA**: ``scripts/oe/oeqa-reftarget`` (testimage's steps: OEQemuTarget with oe-core's
   QemuRunner starting runqemu, oe-core's loader and runner, the suite ``xen``).  Measured: the
   boot to QemuRunner's logged-in console, and the duration of
   ``xen.XenTest.test_bundled_guest_lifecycle`` (from the runner's own start/end times).
2. **harness**: ``QemuMachine`` on the same deploy folder and qemuboot.conf, boot to a shell,
   then :func:`xenqemu.lifecycle.run_lifecycle` with the suite's options (bundled configs, its
   timeouts, an HTTP server on 127.0.0.1) and the same steps.  Measured: boot, lifecycle.
3. **runqemu** (unless ``--no-runqemu``): ``scripts/oe/runqemu-reftarget``, oe-core's runqemu
   with the harness's console channel logging in: boot to ``login:`` and to a shell.

Prints the raw times, the medians and the ratios: OEQA lifecycle / harness lifecycle (goal
<= 1.3), and boot to a logged-in shell, QemuRunner / runqemu and QemuRunner / harness.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "scripts" / "oe"))

from benchlib import ROOT, report
from oeglue import (
    GlueError,
    default_rendered_conf,
    oe_environment,
    prepare_deploy,
    reftarget_deploy,
)
from xenqemu import QemuMachine, load_target
from xenqemu.lifecycle import LifecycleOptions, LoopbackHttpServer, run_lifecycle

LIFECYCLE_CASE = "xen.XenTest.test_bundled_guest_lifecycle"
#: The OEQA suite's options (lib/oeqa/runtime/cases/xen.py: lifecycle_options), repeated here
#: because that module imports oe-core's oeqa.
SUITE_OPTIONS = {"config_glob": "/etc/xen/xen-guest-bundle*.cfg", "command_timeout": 120.0,
                 "guest_boot_timeout": 600.0, "dhcp_timeout": 180.0, "memory_timeout": 180.0, "xl_timeout": 600.0}


def run_oeqa(release: str, qemuboot: Path, work: Path) -> dict[str, float]:
    """oe-core's runner on the suite; the boot and the lifecycle case (seconds)."""
    timings = work / "oeqa-timings.json"
    command = [sys.executable, str(ROOT / "scripts/oe/oeqa-reftarget"), "--release", release, "--qemuboot",
               str(qemuboot), "--run-dir", str(work / "oeqa"), "--timings", str(timings)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"oeqa-reftarget failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                           f"{result.stderr[-3000:]}")
    data = json.loads(timings.read_text())
    print(f"   oeqa: boot {data['boot to logged-in console']} s (runner milestones "
          f"{json.dumps(data['runner milestones'])}); cases {json.dumps(data['cases'])}", flush=True)
    return {"boot": data["boot to logged-in console"], "lifecycle": data["cases"][LIFECYCLE_CASE],
            "total": data["total"]}


def run_harness(qemuboot: Path, work: Path) -> dict[str, float]:
    """The harness on the same deploy folder: boot to a shell, then the suite's lifecycle."""
    deploy = work / "harness-deploy"
    prepare_deploy(qemuboot, reftarget_deploy(), deploy)
    conf = next(p for p in deploy.glob("*.qemuboot.conf") if not p.is_symlink())
    started = time.monotonic()
    with QemuMachine(load_target(conf), base_dir=work / "harness-runs") as machine:
        console = machine.boot()
        booted = time.monotonic()
        with LoopbackHttpServer() as http:
            result = run_lifecycle(console, LifecycleOptions(http=http, **SUITE_OPTIONS))  # type: ignore[arg-type]
        lifecycle = time.monotonic() - booted
    if not result.ok:
        raise RuntimeError(f"the harness's lifecycle failed:\n{result.summary()}")
    return {"boot": booted - started, "lifecycle": lifecycle}


def run_runqemu(release: str, qemuboot: Path, work: Path) -> dict[str, float]:
    """oe-core's runqemu with a plain login: boot to login: and to a shell."""
    timings = work / "runqemu-timings.json"
    command = [sys.executable, str(ROOT / "scripts/oe/runqemu-reftarget"), "--release", release, "--qemuboot",
               str(qemuboot), "--run-dir", str(work / "runqemu"), "--timings", str(timings)]
    (work / "runqemu").mkdir(exist_ok=True)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"runqemu-reftarget failed ({result.returncode}):\n{result.stdout[-2000:]}\n"
                           f"{result.stderr[-2000:]}")
    data = json.loads(timings.read_text())
    return {"login": data["login prompt"], "shell": data["root shell"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", nargs="?", help="ignored (run_all.py passes one); see the docstring")
    parser.add_argument("--release", default="wrynose")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--qemuboot", type=Path, help="rendered qemuboot.conf (default: render-qemuboot's)")
    parser.add_argument("--no-runqemu", action="store_true", help="leave out the runqemu boot")
    args = parser.parse_args()
    try:
        env = oe_environment(args.release)
        reftarget_deploy()
    except GlueError as err:
        raise SystemExit(f"bench_oeqa: {err}") from None
    qemuboot = args.qemuboot or default_rendered_conf(env.release)
    if qemuboot is None or not qemuboot.exists():
        raise SystemExit("bench_oeqa: no rendered qemuboot.conf: run scripts/oe/render-qemuboot --reftarget DEPLOY "
                         "first (or pass --qemuboot)")
    print(f"release {env.release}, qemuboot {qemuboot}, load {os.getloadavg()}", flush=True)
    sides: dict[str, list[dict[str, float]]] = {"oeqa": [], "harness": [], "runqemu": []}
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="xq-bench-oeqa-") as folder:
            work = Path(folder)
            sides["oeqa"].append(run_oeqa(env.release, qemuboot, work))
            sides["harness"].append(run_harness(qemuboot, work))
            if not args.no_runqemu:
                sides["runqemu"].append(run_runqemu(env.release, qemuboot, work))
        print(f"run {run + 1}: " + "; ".join(f"{side} {values[-1]}" for side, values in sides.items() if values),
              flush=True)
    def column(side: str, key: str) -> list[float]:
        return [values[key] for values in sides[side]]

    report("oeqa_lifecycle", f"OEQA lifecycle case / harness lifecycle ({env.release}, same target)",
           "OEQA test_bundled_guest_lifecycle", column("oeqa", "lifecycle"), "harness run_lifecycle",
           column("harness", "lifecycle"), goal=1.3)
    report("oeqa_boot_harness", f"QemuRunner boot to logged-in console / harness boot to shell ({env.release})",
           "QemuRunner (runqemu + login)", column("oeqa", "boot"), "harness QemuMachine.boot",
           column("harness", "boot"))
    if sides["runqemu"]:
        report("oeqa_boot_runqemu", f"QemuRunner boot to logged-in console / runqemu + pexpect login ({env.release})",
               "QemuRunner (runqemu + login)", column("oeqa", "boot"), "runqemu + pexpect login",
               column("runqemu", "shell"),
               extra={"runqemu_login_prompt_median": round(statistics.median(column("runqemu", "login")), 2)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
