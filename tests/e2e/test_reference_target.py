"""End-to-end: the reference Xen target in QEMU, every bundled guest through its whole lifecycle.

One boot per session (the harness's ``xen_host``). The lifecycle check is the harness's one
implementation (:mod:`xenqemu.lifecycle`, what ``xenqemu lifecycle`` runs), with every check the
reference target allows: network, an HTTP fetch from the test's server, and the hostname each
guest disk holds. The tests run in file order and the last one powers the host off and checks
that no QEMU is left.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
from xenqemu.lifecycle import (
    DEFAULT_PLAN,
    FINAL_STEPS,
    GUEST_STEPS,
    HOST_STEPS,
    GuestConfig,
    LifecycleOptions,
    LifecyclePlan,
    LifecycleReport,
    Outcome,
    run_lifecycle,
)
from xenreftarget import GUESTS, all_guests

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DESTROY_DOM0LESS = "for d in $(xl list | awk '/^dom0less-/ {print $1}'); do xl destroy \"$d\"; done"

GUEST_NAMES = [spec.name for spec in all_guests()]
#: Guests xendomains starts at boot: the lifecycle checks them without ``xl create`` (its
#: 'autostart' step), so they are left out of the one-guest-at-a-time test.
STARTED_AT_BOOT = [spec.name for spec in all_guests() if spec.autostart]
#: What the lifecycle may skip on the reference target: a guest started at boot is not created
#: or unpaused, and these runs neither power off nor name the dom0less domains.
ALLOWED_SKIPS = {(name, step) for name in STARTED_AT_BOOT for step in ("create", "unpause")} | {
    ("dom0", "dom0less"), ("dom0", "poweroff")}


def _running_at_boot(reference_target) -> set[str]:  # type: ignore[no-untyped-def]
    """Domains that run before any ``xl create``: Domain-0, the dom0less ones, the autostart guests."""
    dom0less = [f"dom0less-{n}" for n, _ in enumerate(reference_target.manifest.get("dom0less", []), start=1)]
    return {"Domain-0", *dom0less, *(g["name"] for g in reference_target.guests if g.get("autostart"))}


def _address_when_up(interface: str, seconds: int) -> str:
    """Shell command: wait up to ``seconds`` for an IPv4 address on ``interface``, then list it."""
    listing = f"ip -4 -o addr show dev {interface}"
    return (f"i=0; until {listing} | grep -q inet || [ $i -ge {seconds} ]; do sleep 1; i=$((i + 1)); done; "
            f"{listing}")


def _guest(target, name):  # type: ignore[no-untyped-def]
    found = [g for g in target.guests if g["name"] == name]
    assert found, f"guest {name} is not bundled; bundled: {[g['name'] for g in target.guests]}"
    return found[0]


def test_every_bundling_form_put_a_guest_into_dom0(reference_target):
    origins = {g["name"]: g["origin"] for g in reference_target.guests}
    assert sorted(origins) == sorted(GUEST_NAMES)
    forms = {spec.form: spec for spec in all_guests()}
    assert origins[forms["XEN_BUNDLED_GUESTS"].name].startswith("XEN_BUNDLED_GUESTS entry")
    assert origins[forms["deploy-config"].name] == forms["deploy-config"].config
    assert origins[forms["auto-bundle"].name] == forms["auto-bundle"].config
    # meta-virtualization's forms: a recipe entry, and a bundle package merged from dom0's staging folder
    assert origins[forms["BUNDLED_XEN_GUESTS"].name].startswith("BUNDLED_XEN_GUESTS entry")
    assert origins[forms["XEN_GUEST_BUNDLES"].name].startswith("bundle 'xen-ref-guest-bundle-debian' (")
    seed_forms = {spec.name for spec in GUESTS}
    for guest in reference_target.guests:
        expected = ("/etc/xen/xen-guest-bundle-" if guest["name"] in seed_forms
                    else f"/etc/xen/{guest['name']}.cfg")
        assert guest["config"].startswith(expected)
        assert all(f.startswith("/var/lib/xen/images/") for f in guest["files"])
        assert guest["disk"] in guest["files"]
    disks = {guest["disk"] for guest in reference_target.guests}
    assert len(disks) == len(GUEST_NAMES), "each guest must have its own disk file"


def test_dom0_runs_the_toolstack_and_the_bridge(xen_host, reference_target):
    domains = xen_host.xl.list()
    assert domains[0].name == "Domain-0" and domains[0].in_state("r")
    assert {d.name for d in domains} == _running_at_boot(reference_target), \
        f"only the domains started at boot may run yet: {domains}"
    assert int(xen_host.xl.info()["total_memory"]) > 0
    # dom0's DHCP runs in the background (as systemd-networkd does in the Yocto image)
    bridge = xen_host.console.run(_address_when_up("xenbr0", 60), timeout=120)
    assert "inet 10.0.2.15/" in bridge.output, bridge.output
    ports = xen_host.console.run("ls /sys/class/net/xenbr0/brif", timeout=60).output.split()
    assert "eth0" in ports
    listing = xen_host.console.run("ls /etc/xen", timeout=60).output.split()
    for guest in reference_target.guests:
        assert os.path.basename(guest["config"]) in listing


def _lifecycle(xen_host, configs, http_server, log=None, plan=DEFAULT_PLAN,  # type: ignore[no-untyped-def]
               **options) -> LifecycleReport:
    """The lifecycle check with everything the reference target lets it check."""
    settings = {"guests": tuple(configs), "http": http_server, "expected_hostname": lambda name: name}
    settings.update(options)
    return run_lifecycle(xen_host.console, LifecycleOptions(**settings), plan,  # type: ignore[arg-type]
                         on_result=(lambda r: log(f"  {r.line()}")) if log else None)


#: For the broken-config tests, which run after the all-guests test has destroyed the guests
#: started at boot: the 'autostart' host step would fail on them, not on the broken config.
WITHOUT_AUTOSTART = LifecyclePlan(tuple(s for s in HOST_STEPS if s.name != "autostart"), GUEST_STEPS, FINAL_STEPS)


def _reporter_log(request):  # type: ignore[no-untyped-def]
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    return (lambda m: reporter.write_line(m)) if reporter else None


@pytest.mark.parametrize("name", [n for n in GUEST_NAMES if n not in STARTED_AT_BOOT])
def test_guest_lifecycle(name, xen_host, reference_target, http_server, e2e_timings, request):
    guest = _guest(reference_target, name)
    started = time.monotonic()
    report = _lifecycle(xen_host, [guest["config"]], http_server, _reporter_log(request), concurrent=False)
    e2e_timings[f"lifecycle {name} (s)"] = round(time.monotonic() - started, 1)
    e2e_timings[f"lifecycle {name} steps"] = {r.step: round(r.seconds, 1) for r in report.of(name)}
    assert report.ok, report.summary()
    assert [r.outcome for r in report.of(name)] == [Outcome.PASS] * len(report.of(name)), \
        "the reference target allows every check: nothing may be skipped"
    assert any(client == "127.0.0.1" and path.startswith(f"/{name[:16]}-") for client, path in http_server.requests()), \
        "the host's HTTP server saw no fetch"


def test_all_guests_together_as_the_main_job_does(xen_host, reference_target, http_server, e2e_timings, request):
    """What ``xenqemu lifecycle`` runs: every bundled config, created together as memory allows."""
    started = time.monotonic()
    report = _lifecycle(xen_host, [g["config"] for g in reference_target.guests], http_server,
                        _reporter_log(request))
    e2e_timings["lifecycle all guests together (s)"] = round(time.monotonic() - started, 1)
    assert report.ok, report.summary()
    assert sorted(report.subjects()) == sorted(["dom0", *GUEST_NAMES])
    unexpected = [r.line() for r in report.results
                  if r.outcome is not Outcome.PASS and (r.subject, r.step) not in ALLOWED_SKIPS]
    assert not unexpected, "\n".join(unexpected)
    # every guest is destroyed, those started at boot too; the dom0less domains stay
    assert {d.name for d in xen_host.xl.list()} == \
        _running_at_boot(reference_target) - set(STARTED_AT_BOOT)


def test_detached_create_then_xl_console(xen_host, xen_guest, reference_target, e2e_timings):
    guest = _guest(reference_target, GUEST_NAMES[0])
    started = time.monotonic()
    domain = xen_guest(guest["config"])
    assert domain.name == guest["name"] and domain.in_state("rbp")
    with xen_guest.console(domain.name) as shell:
        assert shell.run("cat /etc/hostname", timeout=120).output.strip() == domain.name
        text = xen_host.console  # the dom0 channel stays usable after detaching (checked below)
    listed = xen_host.xl.find(domain.name)
    assert listed is not None and listed.in_state("rb")
    xen_host.xl.destroy(domain.name)
    assert xen_host.xl.find(domain.name) is None
    assert text.run("true", timeout=60).status == 0
    e2e_timings["detached create + xl console + destroy (s)"] = round(time.monotonic() - started, 1)


def _broken_copy(xen_host, config: str, old: str, new: str, label: str) -> str:  # type: ignore[no-untyped-def]
    """Copy ``config`` to /tmp in dom0 with ``old`` replaced by ``new`` (the original is kept)."""
    target = f"/tmp/broken-{label}.cfg"
    command = (f"sed 's#{old}#{new}#g' {shlex.quote(config)} > {target} && "
               f"grep -q {shlex.quote(new)} {target}")
    result = xen_host.console.run(command, timeout=60)
    assert result.status == 0, f"could not make the broken copy: {result.output}"
    return target


def test_config_with_a_wrong_disk_path_fails_the_lifecycle_check(xen_host, reference_target,
                                                                  http_server):
    guest = _guest(reference_target, "thirdparty-guest")
    disk = next(f for f in guest["files"] if f.endswith(".ext4"))
    broken = _broken_copy(xen_host, guest["config"], disk, "/var/lib/xen/images/missing.ext4", "disk")
    report = _lifecycle(xen_host, [broken], http_server, plan=WITHOUT_AUTOSTART)
    failed = report.failed_step(guest["name"])
    assert failed is not None and failed.step == "create", report.summary()
    assert all(r.outcome is Outcome.NOT_RUN for r in report.of(guest["name"])[2:])
    assert xen_host.xl.find(guest["name"]) is None, "the failed guest must not stay behind"
    # the dom0 checks of the same run (what xenqemu lifecycle reports first) all passed
    assert all(r.outcome is Outcome.PASS or ("dom0", r.step) in ALLOWED_SKIPS for r in report.of("dom0"))
    # the bundled config itself is untouched and still names the real disk
    text = xen_host.console.run(f"cat {guest['config']}", timeout=60).output
    assert GuestConfig.from_text(text, guest["config"]).disk_target == disk


def test_config_pointing_at_another_guests_disk_fails_the_lifecycle_check(xen_host, reference_target,
                                                                          http_server):
    guest = _guest(reference_target, "thirdparty-guest")
    other = _guest(reference_target, GUEST_NAMES[0])
    own_disk = next(f for f in guest["files"] if f.endswith(".ext4"))
    other_disk = next(f for f in other["files"] if f.endswith(".ext4"))
    broken = _broken_copy(xen_host, guest["config"], own_disk, other_disk, "swapped")
    report = _lifecycle(xen_host, [broken], http_server, plan=WITHOUT_AUTOSTART)
    failed = report.failed_step(guest["name"])
    assert failed is not None and failed.step == "root device", report.summary()
    assert other["name"] in failed.detail
    assert xen_host.xl.find(guest["name"]) is None


def test_sigterm_stops_xenqemu_and_its_qemu_at_once(reference_target, tmp_path):
    """SIGTERM to a running ``xenqemu`` ends it like Ctrl-C: one line, QEMU stopped, status 143."""
    command = [sys.executable, "-m", "xenqemu.cli", "run", "--warm", "--run-dir", str(tmp_path),
               str(reference_target.qemuboot_conf), "--", "sleep 600"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    lines = []
    for line in process.stderr:
        lines.append(line)
        if "shell ready" in line:
            break
    assert any("shell ready" in line for line in lines), "".join(lines)
    run_dir = next(line.split("run directory ", 1)[1].strip() for line in lines if "run directory" in line)
    time.sleep(1.0)  # "sleep 600" is running in dom0 now
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    rest = process.stderr.read()
    status = process.wait(timeout=60)
    stopped_in = time.monotonic() - started
    assert status == 143, rest
    assert f"xenqemu: interrupted; QEMU stopped. Logs in {run_dir}" in rest.splitlines()
    assert "Traceback" not in rest
    assert stopped_in < 20, f"QEMU was not stopped at once ({stopped_in:.1f}s)"
    assert _qemu_processes_of(run_dir) == []


def _qemu_processes_of(run_dir: str) -> list[str]:
    """PIDs of QEMU processes whose command line names ``run_dir``."""
    leftovers = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as stream:
                    argv = stream.read().decode(errors="replace")
            except OSError:
                continue
            if "qemu-system" in argv and run_dir in argv:
                leftovers.append(entry)
    return leftovers


def test_zz_clean_poweroff_leaves_no_qemu(xen_host, e2e_timings):
    machine = xen_host.machine
    pid = machine.pid
    started = time.monotonic()
    # (known limit, docs/bundling.md: a running dom0less domain holds dom0's shutdown ~3 minutes)
    assert xen_host.console.run(DESTROY_DOM0LESS, timeout=300).status == 0
    # systemd's poweroff stops xendomains (guests shut down), unmounts, then Xen halts the machine.
    xen_host.console.start("poweroff")
    code = machine.process.wait(timeout=600)
    e2e_timings["poweroff (s)"] = round(time.monotonic() - started, 1)
    assert code == 0, f"QEMU exited with {code} after poweroff"
    assert machine.stop() == 0
    assert not os.path.exists(f"/proc/{pid}"), f"QEMU {pid} is still there"
    leftovers = _qemu_processes_of(str(machine.run_dir))
    assert leftovers == [], f"QEMU processes of this run left: {leftovers}"
    serial = machine.paths.serial_log.read_text(errors="replace")
    assert "reboot: Power down" in serial and "Dom0 halted" in serial
