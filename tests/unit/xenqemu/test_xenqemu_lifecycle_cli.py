"""``xenqemu lifecycle``'s report formats and the command line's signal handling.

The JUnit XML is parsed back and checked against what the common JUnit schema (the one Jenkins'
junit plugin and GitLab read) allows: ``testsuites`` > ``testsuite`` > ``testcase`` with
``failure``/``skipped``/``system-out``, and the counts and times as numbers.  The SIGTERM test
starts the real ``xenqemu`` with a real QEMU on a target whose Xen never prints a banner, so the
command is certainly still running (waiting for the banner) when the signal arrives.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar
from xml.etree import ElementTree

import pytest
from xenqemu import QemuMachine, load_target
from xenqemu.cli import build_parser, lifecycle_options, main
from xenqemu.lifecycle import LifecycleReport, Outcome, StepResult
from xenqemu.poweroff import writable_overlay

ROOT = Path(__file__).resolve().parents[3]

#: Elements and attributes the JUnit schema allows (jenkins junit plugin / GitLab).
SUITE_ATTRIBUTES = {"name", "tests", "failures", "errors", "skipped", "time", "timestamp", "hostname", "id",
                    "package", "disabled", "file"}
CASE_ATTRIBUTES = {"name", "classname", "time", "assertions", "status", "file", "line"}
CASE_CHILDREN = {"failure", "error", "skipped", "system-out", "system-err", "properties"}


def sample_report() -> LifecycleReport:
    return LifecycleReport([
        StepResult("dom0", "toolstack", Outcome.PASS, 0.4, "Xen 4.17.7", "xl info answers"),
        StepResult("alpha", "create", Outcome.PASS, 2.5, "domain 1", "xl create exits 0"),
        StepResult("alpha", "cmdline", Outcome.FAIL, 0.2, "runs with 'quiet'\nasks for 'root=/dev/xvda'\x1b[0m",
                   "/proc/cmdline equals the config's"),
        StepResult("alpha", "destroy", Outcome.NOT_RUN, 0.0, "not run: 'cmdline' failed", "xl destroy exits 0"),
        StepResult("beta", "http", Outcome.SKIP, 0.0, "no HTTP server given", "fetch"),
    ], seconds=12.25)


def test_junit_xml_has_one_case_per_step_and_subject_with_failures() -> None:
    text = sample_report().junit_xml(properties={"target": "t.qemuboot.conf"})
    assert text.startswith("<?xml")
    root = ElementTree.fromstring(text.encode())
    assert root.tag == "testsuites"
    suites = list(root)
    assert [s.tag for s in suites] == ["testsuite"]
    suite = suites[0]
    assert set(suite.attrib) <= SUITE_ATTRIBUTES
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("5", "1", "0", "2")
    assert float(suite.get("time", "x")) == pytest.approx(12.25)
    properties = suite.find("properties")
    assert properties is not None and properties[0].attrib == {"name": "target", "value": "t.qemuboot.conf"}
    cases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        ("xenqemu.lifecycle.dom0", "toolstack"), ("xenqemu.lifecycle.alpha", "create"),
        ("xenqemu.lifecycle.alpha", "cmdline"), ("xenqemu.lifecycle.alpha", "destroy"),
        ("xenqemu.lifecycle.beta", "http")]
    for case in cases:
        assert set(case.attrib) <= CASE_ATTRIBUTES
        assert {child.tag for child in case} <= CASE_CHILDREN
        float(case.get("time", "x"))
    failure = cases[2].find("failure")
    assert failure is not None and failure.get("message") == "runs with 'quiet'"
    assert failure.get("type") == "LifecycleFailure"
    assert "asks for 'root=/dev/xvda'" in (failure.text or "") and "\x1b" not in (failure.text or "")
    assert cases[3].find("skipped").get("message") == "not run: 'cmdline' failed"  # type: ignore[union-attr]
    assert cases[4].find("skipped").get("message") == "no HTTP server given"  # type: ignore[union-attr]
    assert cases[0].find("system-out").text == "Xen 4.17.7"  # type: ignore[union-attr]


def test_report_summary_counts_and_failures() -> None:
    report = sample_report()
    assert not report.ok
    first, *failed = report.summary().splitlines()
    assert first.startswith("2 passed, 1 failed, 1 skipped, 1 not run in 12.2s")
    assert failed == ["FAILED alpha: cmdline - runs with 'quiet'\nasks for 'root=/dev/xvda'\x1b[0m".splitlines()[0]]


def test_lifecycle_options_from_the_command_line() -> None:
    args = build_parser().parse_args(["lifecycle", "t.conf", "--guest", "/etc/xen/a.cfg", "--hostname-is-name",
                                      "--expect-hostname", "b=bee", "--sequential", "--timeout-scale", "2"])

    class Target:
        network = True
        variables: ClassVar[dict[str, str]] = {"QB_XEN_DOM0LESS": "dl",
                                               "QB_XEN_DOM0LESS_BOOTARGS_1": "console=ttyAMA0 x=1"}

    options = lifecycle_options(args, Target(), None)  # type: ignore[arg-type]
    assert options.guests == ("/etc/xen/a.cfg",) and not options.concurrent and options.network
    assert options.dom0less == (("dl", "console=ttyAMA0 x=1"),)
    assert options.expected_hostname is not None
    assert (options.expected_hostname("a"), options.expected_hostname("b")) == ("a", "bee")
    assert options.guest_boot_timeout == 1200.0 and options.dhcp_timeout == 600.0
    Target.network = False
    assert not lifecycle_options(args, Target(), None).network  # type: ignore[arg-type]


def test_malformed_expected_hostname_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = write_target(tmp_path)
    assert main(["lifecycle", str(target), "--expect-hostname", "nohostname", "--run-dir", str(tmp_path)]) == 2
    assert "write DOMAIN=HOSTNAME" in capsys.readouterr().err


def write_target(folder: Path) -> Path:
    """A YAML target whose "Xen" is zeros: QEMU runs, nothing ever prints a banner."""
    for name in ("xen.bin", "Image", "rootfs.ext4"):
        (folder / name).write_bytes(bytes(65536))
    target = folder / "target.yaml"
    target.write_text("kernel: xen.bin\ndom0:\n  kernel: Image\nrootfs: rootfs.ext4\nmemory: 256M\nsmp: 1\n")
    return target


def qemu_processes_of(run_dir: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "qemu-system" in argv and run_dir in argv:
                found.append(int(entry))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_xenqemu_and_its_qemu_with_one_line(tmp_path: Path, signum: int, status: int) -> None:
    target = write_target(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "lib") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen([sys.executable, "-m", "xenqemu.cli", "lifecycle", str(target), "--run-dir",
                                str(tmp_path / "runs")], stderr=subprocess.PIPE, text=True, env=env)
    assert process.stderr is not None
    first = process.stderr.readline()
    assert "run directory" in first, first
    run_dir = first.split("run directory ", 1)[1].strip()
    deadline = time.monotonic() + 60
    while not qemu_processes_of(run_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    qemu = qemu_processes_of(run_dir)
    assert qemu, "QEMU did not start"
    time.sleep(0.5)
    started = time.monotonic()
    process.send_signal(signum)
    rest = process.stderr.read()
    assert process.wait(timeout=60) == status, rest
    assert time.monotonic() - started < 15, "QEMU must be stopped at once, not after a poweroff attempt"
    assert rest.strip().splitlines()[-1] == f"xenqemu: interrupted; QEMU stopped. Logs in {run_dir}", rest
    assert "Traceback" not in rest
    assert qemu_processes_of(run_dir) == []
    assert not any(Path(f"/proc/{pid}").exists() for pid in qemu)


def test_poweroff_with_warm_start_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = write_target(tmp_path)
    assert main(["lifecycle", str(target), "--poweroff", "--warm", "--run-dir", str(tmp_path)]) == 2
    assert "--poweroff boots cold on a writable overlay: leave out --warm" in capsys.readouterr().err


def test_poweroff_puts_the_root_file_system_on_an_overlay_in_the_run_dir(tmp_path: Path) -> None:
    machine = QemuMachine(load_target(write_target(tmp_path)), base_dir=tmp_path)
    overlay = writable_overlay(machine)
    assert overlay.parent == Path(machine.run_dir) and overlay.read_bytes()[:4] == b"QFI\xfb"
    info = subprocess.run(["qemu-img", "info", "--output=json", str(overlay)], capture_output=True, text=True,
                          check=True)
    assert json.loads(info.stdout)["backing-filename"] == str(tmp_path / "rootfs.ext4")
    drives = [a for a in machine.argv if a.startswith("if=")]
    assert drives == [f"if=none,id=rootfs,file={overlay},format=qcow2"], drives
