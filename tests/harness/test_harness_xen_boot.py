"""A real Xen host in QEMU, booted cold by this module (needs a target).

Configure the target with ``--xenqemu-target PATH`` or ``XENQEMU_TARGET`` (for the reference
target: the ``xen-image-minimal-qemuarm64.qemuboot.conf`` that ``xen-ref-target build`` writes).
Without one these tests fail: they are part of the product.

The module boots its own host instead of using the session's ``xen_host``: that one may start
warm (tests/e2e turn warm start on) and is powered off by the end-to-end suite's last test, and
these tests check the cold boot phases. The plugin's fixtures are exercised by tests/e2e and by
test_harness_plugin.py; the host here is built from the plugin's own XenHost/GuestFactory.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from xenqemu import QemuMachine, Xl, load_target
from xenqemu.pytest_plugin import GuestFactory, XenHost

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


@pytest.fixture(scope="module")
def cold_host(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    target = request.config.getoption("--xenqemu-target")
    if not target:
        pytest.fail("xenqemu: no target configured (--xenqemu-target or XENQEMU_TARGET)", pytrace=False)
    with QemuMachine(load_target(target), base_dir=tmp_path_factory.mktemp("cold-runs")) as machine:
        console = machine.boot()
        yield XenHost(machine=machine, console=console, xl=Xl(console))


@pytest.fixture
def cold_guests(cold_host: XenHost):
    factory = GuestFactory(cold_host)
    yield factory
    factory.cleanup()


def idle_config(host: XenHost) -> tuple[str, str]:
    """The first bundled config whose domain is not already running (autostart, dom0less)."""
    idle = host.xl.idle_configs()
    assert idle, "the host image bundles no guest config in /etc/xen that is not already running"
    return idle[0]


def test_dom0_boot_phases_and_xl(cold_host: XenHost) -> None:
    xen_host = cold_host
    phases = [p.name for p in xen_host.machine.phases]
    assert phases == ["xen_banner", "dom0_handover", "dom0_kernel", "login_prompt", "shell"]
    domains = xen_host.xl.list()
    assert domains[0].name == "Domain-0" and domains[0].id == 0
    info = xen_host.xl.info()
    assert int(info["free_memory"]) > 0 and info["xen_version"]
    assert (xen_host.run_dir / "serial.log").stat().st_size > 0


def test_guest_create_console_detach_destroy(cold_host: XenHost, cold_guests: GuestFactory) -> None:
    xen_host, xen_guest = cold_host, cold_guests
    config, name = idle_config(xen_host)
    free_before = xen_host.xl.free_memory()
    with xen_guest.attach(config) as guest:
        status, cmdline = guest.run("cat /proc/cmdline")
        assert status == 0 and "console=hvc0" in cmdline
        assert guest.run("echo $((6 * 7))").output == "42\n"
    domain = xen_host.xl.wait_state(name, ("r", "b"))
    assert domain.mem > 0
    xen_host.xl.destroy(name)
    assert xen_host.xl.find(name) is None
    assert xen_host.xl.free_memory() >= free_before - 4


def test_detached_create_then_console(cold_host: XenHost, cold_guests: GuestFactory) -> None:
    xen_host, xen_guest = cold_host, cold_guests
    config, _ = idle_config(xen_host)
    domain = xen_guest(config)
    assert xen_host.xl.domid(domain.name) == domain.id
    with xen_guest.console(domain.name) as guest:
        assert guest.run("uname -s").output == "Linux\n"
    assert xen_host.run("echo back in dom0").output == "back in dom0\n"


def test_cli_lifecycle_exit_status(request: pytest.FixtureRequest) -> None:
    """``xenqemu lifecycle`` boots its own machine and passes on a good target."""
    target = request.config.getoption("--xenqemu-target")
    if not target:
        pytest.fail("xenqemu: no target configured (--xenqemu-target or XENQEMU_TARGET)", pytrace=False)
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-m", "xenqemu.cli", "lifecycle", target],
                          capture_output=True, text=True, env=env, timeout=3600, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "lifecycle OK" in proc.stderr
    for phase in ("Xen banner", "hand-over to dom0", "dom0 kernel output", "login prompt", "shell ready"):
        assert phase in proc.stderr
