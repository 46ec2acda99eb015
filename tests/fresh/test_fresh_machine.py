"""A fresh Debian 12 machine runs meta-xen-ref: scripts/check-fresh-machine as a slow test.

The script builds (or takes today's cached) minimal bookworm tree with mmdebstrap, clones this
repository's committed HEAD into a fresh copy of it, and runs scripts/setup-host, the reference
target build, the main job (scripts/run-lifecycle) and the fast tests (``--tests fast``) in it, in a
chroot. The slow tests are left to the run this check is part of: CI runs it on a fresh machine of
its own, so running every QEMU boot a second time inside the tree would only double CI's time
(45 minutes at most); ``scripts/check-fresh-machine`` alone runs the whole suite by default. It needs root (it uses sudo otherwise) and the
network the set-up needs (Debian's and PyPI's registries). ``--xenqemu-timeout-scale``
(``XENQEMU_TIMEOUT_SCALE``) is passed on to the main job and the tests. The step results and
times are printed at the end of the session (and in the failure message).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STEPS = ["base tree (mmdebstrap)", "fresh tree and clone", "setup-host", "reference target build",
         "main job (run-lifecycle)", "tests (fast)"]


@pytest.mark.slow
@pytest.mark.fresh
def test_a_fresh_debian_12_machine_sets_up_runs_the_main_job_and_passes_the_tests(
        request: pytest.FixtureRequest, tmp_path: Path, fresh_summary: list[str]) -> None:
    report_file, log_file = tmp_path / "report.json", tmp_path / "check-fresh-machine.log"
    command = [str(REPO / "scripts" / "check-fresh-machine"), "--tests", "fast", "--report", str(report_file)]
    scale = request.config.getoption("xenqemu_timeout_scale", default=None)
    if scale:
        command += ["--timeout-scale", str(scale)]
    with open(log_file, "w") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
    report = json.loads(report_file.read_text()) if report_file.is_file() else {"steps": [], "total_seconds": 0}
    steps = report["steps"]
    summary = "\n".join([f"  {s['step']}: {s['status']} in {s['seconds']:.0f} s {s['detail']}" for s in steps]
                        + [f"  total: {report['total_seconds']:.0f} s"])
    tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-60:])
    fresh_summary.append(f"exit status {result.returncode}, log {log_file}")
    fresh_summary.extend(summary.splitlines())
    assert result.returncode == 0 and [s["step"] for s in steps] == STEPS \
        and all(s["status"] == "passed" for s in steps), \
        f"the fresh-machine check failed (exit {result.returncode}):\n{summary}\n--- its last lines:\n{tail}"
