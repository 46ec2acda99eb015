"""End-to-end: the amd64 reference target (qemux86-64, Xen's multiboot entry) through the main job.

Self-contained (its own build and boot; the session's ``xen_host`` is the arm64 target): builds
``xen-ref-target build --arch amd64`` (cached beside arm64's) and runs ``xenqemu lifecycle`` on its
qemuboot.conf as ``scripts/run-lifecycle --arch amd64`` does, so that CI runs the lifecycle on both
architectures. Every step of the JUnit report must pass: dom0's toolstack, bridge and autostart,
and each guest (PVH and PV) from create to memory back.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree

import pytest
from xenreftarget import Distro, build_target, machine_for

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

GUEST_STEPS = {"config", "create", "unpause", "console", "cmdline", "root device", "network", "http",
               "detach", "state", "destroy", "gone", "memory back"}


def test_amd64_target_passes_the_whole_lifecycle(tmp_path: Path, e2e_timings, request) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    target = build_target(distro=Distro("bookworm", "amd64"), log=lambda message: None)
    e2e_timings["amd64 build (s)"] = round(time.monotonic() - started, 1)
    assert target.manifest["distro"]["arch"] == "amd64" and target.manifest["machine"] == "qemux86-64"
    scale = request.config.getoption("--xenqemu-timeout-scale") or 1.0
    junit = tmp_path / "amd64-lifecycle.xml"
    command = [sys.executable, "-m", "xenqemu.cli", "lifecycle", str(target.qemuboot_conf),
               "--hostname-is-name", "--timeout-scale", str(scale), "--junit", str(junit),
               "--run-dir", os.environ.get("XENQEMU_RUN_BASE") or str(tmp_path)]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    e2e_timings["amd64 lifecycle, boot included (s)"] = round(time.monotonic() - started, 1)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    autostarted = set(target.manifest["autostart"])
    assert autostarted, "the amd64 target mirrors arm64's guest set: one guest starts at boot"
    steps: dict[str, set[str]] = {}
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        subject, step = case.get("classname", "").rsplit(".", 1)[-1], case.get("name", "")
        assert case.find("failure") is None, ElementTree.tostring(case, encoding="unicode")
        if case.find("skipped") is not None:
            # only what a guest started at boot by xendomains has no need of, and the two dom0 steps
            # this machine has no use for: no dom0less domain on x86, no poweroff step (QEMU does
            # not exit after Xen's S5 entry there; run-lifecycle does not ask for it either)
            designed = (subject in autostarted and step in ("create", "unpause")) or (
                subject == "dom0" and step in ("dom0less", "poweroff"))
            assert designed, ElementTree.tostring(case)
            continue
        steps.setdefault(subject, set()).add(step)
    assert {"toolstack", "dom0", "bridge", "autostart"} <= steps.pop("dom0")
    assert set(steps) == {g["name"] for g in target.guests}
    for name, done in steps.items():
        expected = GUEST_STEPS - ({"create", "unpause"} if name in autostarted else set())
        assert expected <= done, f"{name}: missing {sorted(expected - done)}"
    amd64 = machine_for("amd64")
    assert not amd64.dom0less and not amd64.poweroff_ends_qemu, "the two dom0 skips above are by design"
    types = {g.name: g.type for g in amd64.guests}
    assert {"pv", "pvh"} <= set(types.values()) and set(types) == set(steps)
