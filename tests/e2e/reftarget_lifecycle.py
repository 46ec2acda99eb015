"""The standard guest lifecycle check on the reference target, used by the end-to-end tests.

One function, :func:`run_guest_lifecycle`, so that the positive tests and the tests with a
deliberately broken config exercise the very same checks: if a broken config passed it, the
check would be worthless.

What it checks, for a config path in dom0 (the config bundled into ``/etc/xen``):
``xl list`` shows Domain-0; ``xl create -c`` reaches the guest's shell; the guest's
``/proc/cmdline`` is exactly what the config asks for (``cmdline``, or ``root=`` + ``extra``, as
xl builds it); the root file system is mounted from the device named by ``root=`` and by the
config's disk ``vdev``; the guest's own name (written into each guest disk by the builder) is the
expected one; ``eth0`` gets a 10.0.2.x address by DHCP through ``xenbr0``; ``wget`` fetches a file
from the test's HTTP server on the host's 127.0.0.1 (10.0.2.2 from QEMU's user network); detach;
``xl list`` shows the guest running or blocked, its vif on ``xenbr0``; ``xl destroy``; the guest is
gone and its memory is free again.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

from xenbundle import xlcfg
from xenbundle.disk import parse_disk


class LifecycleFailure(AssertionError):
    """A step of the lifecycle check failed; ``step`` names it."""

    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"lifecycle step '{step}' failed: {detail}")
        self.step = step
        self.detail = detail


@dataclass(frozen=True)
class ConfigExpectation:
    """What a guest booted from a config must show."""

    name: str
    cmdline: str
    root_device: str
    vdev_device: str
    disk_target: str


def expectation_from_config(text: str, filename: str = "<config>") -> ConfigExpectation:
    """Derive the guest's expected command line and root device from an xl config's text."""
    settings = xlcfg.parse(text, filename).settings()
    name = settings.get("name")
    if not isinstance(name, str):
        raise LifecycleFailure("config", f"{filename} has no name")
    extra, root, cmdline = settings.get("extra"), settings.get("root"), settings.get("cmdline")
    if isinstance(cmdline, str):
        expected = cmdline
    elif isinstance(root, str):
        expected = f"root={root} {extra}" if isinstance(extra, str) else f"root={root}"
    else:
        expected = extra if isinstance(extra, str) else ""
    disks = settings.get("disk") or []
    if not isinstance(disks, list) or not disks:
        raise LifecycleFailure("config", f"{filename} has no disk")
    disk = parse_disk(disks[0])
    match = re.search(r"(?:^|\s)root=(\S+)", expected)
    return ConfigExpectation(name=name, cmdline=expected, root_device=match.group(1) if match else "",
                             vdev_device=f"/dev/{disk.vdev}", disk_target=disk.target or "")


@contextmanager
def _step(name: str, timings: dict[str, float]) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    except LifecycleFailure:
        raise
    except Exception as err:  # every failure is reported as a failed step, with its message
        raise LifecycleFailure(name, f"{type(err).__name__}: {err}") from err
    finally:
        timings[name] = round(time.monotonic() - started, 1)


def _check(condition: bool, step: str, detail: str) -> None:
    if not condition:
        raise LifecycleFailure(step, detail)


def run_guest_lifecycle(host, config: str, fetch_url: str, fetch_content: str,  # type: ignore[no-untyped-def]
                        expected_guest_name: str | None = None,
                        dhcp_timeout: float = 300.0,
                        log: Callable[[str], None] = lambda message: None) -> dict[str, float]:
    """Run the lifecycle check of the guest defined by ``config`` (a path in dom0) on ``host``.

    ``host`` is the harness's ``XenHost`` (``console`` and ``xl``). ``fetch_url`` is fetched in
    the guest with wget and must return ``fetch_content``. Returns the duration of each step.
    Raises :class:`LifecycleFailure` naming the failed step; a guest left running by a failure
    is destroyed before raising.
    """
    timings: dict[str, float] = {}
    xl = host.xl
    name = None
    try:
        with _step("dom0 xl list", timings):
            _check(any(d.name == "Domain-0" for d in xl.list()), "dom0 xl list", "no Domain-0 in 'xl list'")
        with _step("read config", timings):
            result = host.console.run(f"cat {shlex.quote(config)}", timeout=120)
            _check(result.status == 0, "read config", f"cannot read {config}: {result.output.strip()}")
            expected = expectation_from_config(result.output, config)
            name = expected.name
            _check(xl.find(name) is None, "read config", f"domain {name} already exists")
        free_before = xl.free_memory()
        with _step("create -c to guest shell", timings):
            attached = xl.create(config, console=True)
            guest = attached.__enter__()
        try:
            with _step("guest kernel command line", timings):
                cmdline = guest.run("cat /proc/cmdline", timeout=120).output.strip()
                _check(cmdline == expected.cmdline, "guest kernel command line",
                       f"guest runs with {cmdline!r}, the config in {config} asks for {expected.cmdline!r}")
            with _step("guest root device", timings):
                root = guest.run("awk '$2 == \"/\" {print $1}' /proc/mounts", timeout=120).output.split()
                _check(root[-1:] == [expected.root_device] and expected.root_device == expected.vdev_device,
                       "guest root device",
                       f"/ is mounted from {root}, config root={expected.root_device!r}, disk vdev "
                       f"{expected.vdev_device!r}")
                if expected_guest_name is not None:
                    own = guest.run("cat /etc/hostname", timeout=60).output.strip()
                    _check(own == expected_guest_name, "guest root device",
                           f"the root disk ({expected.disk_target}) holds guest {own!r}, expected "
                           f"{expected_guest_name!r}")
            with _step("guest DHCP on xenbr0", timings):
                deadline = time.monotonic() + dhcp_timeout
                address = ""
                while True:
                    out = guest.run("ip -4 -o addr show dev eth0", timeout=60).output
                    found = re.search(r"inet (10\.0\.2\.\d+)/", out)
                    if found:
                        address = found.group(1)
                        break
                    _check(time.monotonic() < deadline, "guest DHCP on xenbr0",
                           f"eth0 got no 10.0.2.x address within {dhcp_timeout:.0f}s: {out.strip()!r}")
                    time.sleep(3)
                log(f"{name}: eth0 {address}")
            with _step("guest HTTP fetch from host", timings):
                # (Debian busybox 1.35's wget segfaults with -T: the harness's timeout bounds it instead)
                fetched = guest.run(f"wget -q -O - {fetch_url}", timeout=120)
                _check(fetched.status == 0 and fetched.output.strip() == fetch_content.strip(),
                       "guest HTTP fetch from host",
                       f"wget {fetch_url} gave status {fetched.status}, output {fetched.output.strip()!r}")
        finally:
            with _step("detach", timings):
                attached.__exit__(None, None, None)
        with _step("xl list shows guest", timings):
            domain = xl.find(name)
            _check(domain is not None and domain.in_state("rb"), "xl list shows guest",
                   f"after detaching, {name} is {domain.state if domain else 'not listed'}")
            bridge = host.console.run("ls /sys/class/net/xenbr0/brif", timeout=60).output.split()
            _check(f"vif{domain.id}.0" in bridge, "xl list shows guest",
                   f"vif{domain.id}.0 is not a port of xenbr0 (ports: {bridge})")
        with _step("destroy and memory back", timings):
            xl.destroy(name)
            _check(xl.find(name) is None, "destroy and memory back", f"{name} still listed")
            free_after = xl.free_memory()
            _check(free_after >= free_before - 4, "destroy and memory back",
                   f"free memory {free_before} MiB before the guest, {free_after} MiB after destroy")
        return timings
    except LifecycleFailure:
        if name is not None:
            try:
                if xl.find(name) is not None:
                    xl.destroy(name, check_memory=False)
            except Exception:  # the original failure is what matters
                pass
        raise
