"""End-to-end: the main job on the Xen 4.20 generation (Debian trixie), in one boot.

CI runs the main job on both Xen generations: bookworm's 4.17 through the other end-to-end tests
(the session's ``xen_host``), trixie's 4.20 here. The test builds the trixie target (cached in its
own folder of the cache, beside bookworm's) and runs what ``scripts/run-lifecycle --debian trixie``
runs after its set-up: ``xenqemu lifecycle`` with every check the reference target allows, one
cold boot, every bundled guest, the 'autostart' step. The harness's run directory and the JUnit
report stay in pytest's temporary folder.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree

import pytest
from xenreftarget import all_guests, build_target
from xenreftarget.packages import Distro

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TRIXIE = Distro("trixie", "arm64")
#: The dom0 steps every run has (the guest steps are checked per guest below).
DOM0_STEPS = ("toolstack", "dom0", "bridge", "guest configs", "autostart")


def _cases(junit: Path) -> list[tuple[str, str, str]]:
    """``(subject, step, outcome)`` of each test case of a ``xenqemu lifecycle --junit`` report."""
    cases = []
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        subject = case.get("classname", "").rsplit(".", 1)[-1]
        outcome = next((child.tag for child in case if child.tag in ("failure", "skipped", "error")), "pass")
        cases.append((subject, case.get("name", ""), outcome))
    return cases


def test_main_job_passes_on_xen_4_20(request: pytest.FixtureRequest, tmp_path: Path,
                                     e2e_timings: dict[str, object]) -> None:
    started = time.monotonic()
    target = build_target(distro=TRIXIE, log=lambda message: None)
    e2e_timings["trixie build (s)"] = round(time.monotonic() - started, 1)
    assert target.manifest["distro"] == {"suite": "trixie", "arch": "arm64", "xen": "4.20"}
    assert target.deploy_dir.parent.name == "trixie-arm64", "trixie must not take bookworm's target"
    junit = tmp_path / "lifecycle.xml"
    scale = request.config.getoption("xenqemu_timeout_scale")
    command = [sys.executable, "-m", "xenqemu.cli", "lifecycle", str(target.qemuboot_conf),
               "--hostname-is-name", "--junit", str(junit), "--run-dir", str(tmp_path / "runs"),
               "--timeout-scale", str(scale)]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    e2e_timings["trixie main job: cold boot and lifecycle (s)"] = round(time.monotonic() - started, 1)
    assert result.returncode == 0, result.stderr[-6000:]
    cases = _cases(junit)
    # The guest xendomains started at boot is not created or unpaused by the check (by design:
    # the 'autostart' step covers it); every other step of every subject passes.
    autostarted = {spec.name for spec in all_guests() if spec.autostart}
    designed_skips = {(name, step, "skipped") for name in autostarted for step in ("create", "unpause")} | {
        ("dom0", "poweroff", "skipped")}  # (this run does not power off)
    assert {c for c in cases if c[2] != "pass"} == designed_skips, "the reference target allows every check"
    dom0_steps = [step for subject, step, _ in cases if subject == "dom0"]
    assert all(step in dom0_steps for step in DOM0_STEPS), dom0_steps
    guests = {subject for subject, _, _ in cases if subject != "dom0"}
    assert guests == {spec.name for spec in all_guests()}
    serial = next((tmp_path / "runs").glob("*/serial.log")).read_text(errors="replace")
    assert "Xen version 4.20." in serial, "the trixie target must boot Xen 4.20"
