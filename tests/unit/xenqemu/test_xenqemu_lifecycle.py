"""The lifecycle check's steps against a simulated Xen host: each pass rule passes and fails.

``FakeXen`` answers the shell commands the steps send to dom0 and to the guests (``xl info``,
``xl list``, ``xl create``, ``cat /proc/cmdline``, ...) from a small model of a Xen host: domains,
free memory, config files, and per guest what its kernel, disk and network show.  A test breaks
one fact (a wrong command line, a disk holding another guest, memory that does not come back)
and checks that exactly the step whose rule covers it fails, that the guest is cleaned up and
that its remaining steps are reported as not run.  The console protocol itself is tested in
tests/harness; here only the commands and their outputs matter.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Callable

import pytest
from xenqemu.console import CommandResult, ConsoleClosed, ConsoleError, ConsoleTimeout
from xenqemu.lifecycle import (
    GuestConfig,
    LifecycleFailure,
    LifecycleOptions,
    LifecycleReport,
    Outcome,
    Published,
    dom0_memory_mib,
    ipv4_addresses,
    kernel_root_device,
    parse_size_mib,
    plan_batches,
    run_lifecycle,
    same_subnet,
)
from xenqemu.xl import Xl, XlError

PART = " && echo --xq-part-- && "

CONFIG = """# a bundled guest
name = "{name}"
type = "pvh"
kernel = "/var/lib/xen/images/Image"
ramdisk = "/var/lib/xen/images/initrd.cpio.gz"
memory = {memory}
vcpus = 1
disk = ['format=raw, vdev=xvda, access=rw, target=/var/lib/xen/images/{name}.ext4']
extra = "console=hvc0 rw quiet"
root = "/dev/xvda"
vif = ['bridge=xenbr0']
"""


@dataclass
class Guest:
    """What a booted guest shows (its kernel, disk and network)."""

    name: str
    domid: int
    memory: int
    cmdline: str
    hostname: str
    root_dev: str = "202:0"   # the major:minor of / (xvda is 202:0)
    address: str = "10.0.2.16/24"
    state: str = "-b----"


@dataclass
class FakeXen:
    """A Xen host as seen through dom0's shell."""

    free: int = 622
    dom0_mem: int = 384
    files: dict[str, str] = field(default_factory=dict)
    guests: dict[str, Guest] = field(default_factory=dict)
    next_id: int = 1
    bridge_ports: list[str] = field(default_factory=lambda: ["eth0"])
    bridge_address: str = "10.0.2.15/24"
    #: injected faults: names of facts that are broken
    faults: set[str] = field(default_factory=set)
    http: FakeHttp | None = None
    log: list[str] = field(default_factory=list)
    pending_block: set[str] = field(default_factory=set)
    listed_once: set[str] = field(default_factory=set)
    #: /etc/xen/auto: link -> target
    auto_links: dict[str, str] = field(default_factory=dict)
    xendomains: str = "active"
    #: what ``journalctl -u xendomains`` prints (empty: nothing logged)
    xendomains_journal: str = ""
    powered_off: bool = False
    #: Xen's serial line: whose domain the input goes to (0: dom0, n: DOMn, -1: Xen), what it printed
    serial_focus: int = 0
    serial_out: str = ""
    dom0less_ids: list[int] = field(default_factory=list)

    def add_config(self, name: str, memory: int = 128, text: str | None = None) -> str:
        path = f"/etc/xen/xen-guest-bundle-{name}.cfg"
        self.files[path] = text if text is not None else CONFIG.format(name=name, memory=memory)
        return path

    # dom0's commands --------------------------------------------------------------
    def dom0(self, command: str) -> tuple[int, str]:
        self.log.append(command)
        handlers: list[tuple[str, Callable[[re.Match[str]], tuple[int, str]]]] = [
            (r"xl info", self._info),
            (r"xl list", self._list),
            (r"xl create -p (\S+)", self._create),
            (r"xl unpause (\S+)", self._unpause),
            (r"xl destroy (\S+)", self._destroy),
            (r"cat (\S+)", lambda m: (0, self.files[m[1]]) if m[1] in self.files else (1, f"cat: {m[1]}: No such file")),
            (r"ls -1 (\S+) 2>/dev/null", self._ls),
            (r"wget -q -O - (\S+) \| sha256sum", self._fetch),
            (r"if \[ -d /run/systemd/system \]; then systemctl is-active xendomains; .*",
             lambda m: (0, self.xendomains + "\n")),
            (r"journalctl -u xendomains -b .*", lambda m: (0, self.xendomains_journal)),
            (r"for l in /etc/xen/auto/\*; do .*", lambda m: (0, "".join(t + "\n" for t in self.auto_links.values()))),
            (r"for c in (.*); do readlink -f .*", lambda m: (0, "".join(c + "\n" for c in m[1].split()))),
            (r"ls /sys/class/net/(\S+)/brif", self._brif),
            (r"ip -4 -o addr show dev xenbr0.*", lambda m: (0, "" if "no-dhcp" in self.faults else
                                                          f"3: xenbr0    inet {self.bridge_address} brd x scope global")),
        ]
        for pattern, handler in handlers:
            match = re.fullmatch(pattern, command)
            if match:
                return handler(match)
        raise AssertionError(f"unexpected dom0 command {command!r}")

    def _info(self, _: re.Match[str]) -> tuple[int, str]:
        keys = ["xen_version", "xen_commandline", "total_memory", "free_memory", "nr_cpus"]
        if "info-incomplete" in self.faults:
            keys.remove("nr_cpus")
        values = {"xen_version": "4.17.7", "xen_commandline": "dom0_mem=384M,max:384M console=dtuart",
                  "total_memory": "1023", "free_memory": str(self.free), "nr_cpus": "2"}
        return 0, "".join(f"{k:<23}: {values[k]}\n" for k in keys)

    def _list(self, _: re.Match[str]) -> tuple[int, str]:
        for name in list(self.pending_block):  # a runnable guest blocks at its next listing but one
            if self.guests[name].state == "------" and name in self.listed_once:
                self.guests[name].state = "-b----"
                self.pending_block.discard(name)
            self.listed_once.add(name)
        rows = [f"{'Domain-0':<40}{0:>6}{self.dom0_mem:>6}     2     r-----     100.0"]
        rows += [f"{g.name:<40}{g.domid:>6}{g.memory:>6}     1     {g.state}       1.0" for g in self.guests.values()]
        return 0, "Name                                        ID   Mem VCPUs\tState\tTime(s)\n" + "\n".join(rows) + "\n"

    def _create(self, m: re.Match[str]) -> tuple[int, str]:
        text = self.files.get(m[1])
        if text is None or "create-fails" in self.faults:
            return 1, f"Parsing config from {m[1]}\nlibxl: error: failed to add device\n"
        config = GuestConfig.from_text(text, m[1])
        if "missing-disk" in self.faults:
            return 1, "libxl: error: disk vdev=xvda: No such file or directory\n"
        hostname = "someone-else" if "other-disk" in self.faults else config.name
        cmdline = "console=hvc0 quiet" if "wrong-cmdline" in self.faults else config.cmdline
        guest = Guest(config.name, self.next_id, config.memory_mib, cmdline, hostname)
        guest.state = "--p---"
        if "wrong-root" in self.faults:
            guest.root_dev = "202:16"
        if "off-subnet" in self.faults:
            guest.address = "192.168.7.2/24"
        self.guests[config.name] = guest
        self.next_id += 1
        self.free -= 0 if "memory-not-taken" in self.faults else config.memory_mib + 1
        return 0, f"Parsing config from {m[1]}\n"

    def _unpause(self, m: re.Match[str]) -> tuple[int, str]:
        guest = self.guests.get(m[1])
        if guest is None:
            return 1, f"unpause failed (domain {m[1]})\n"
        guest.state = "-----c" if "crashed" in self.faults else "------"  # runnable, then blocked
        if "crashed" not in self.faults:
            self.pending_block.add(guest.name)
        return 0, ""

    def _destroy(self, m: re.Match[str]) -> tuple[int, str]:
        guest = self.guests.get(m[1])
        if guest is None or "destroy-fails" in self.faults:
            return 1, f"destroy failed (domain {m[1]})\n"
        if "zombie" not in self.faults:
            del self.guests[m[1]]
        if "memory-leak" not in self.faults:
            self.free += guest.memory + 1
        return 0, ""

    def _fetch(self, m: re.Match[str]) -> tuple[int, str]:
        if self.http is None:
            return 1, "wget: no network\n"
        body = self.http.fetch(m[1], broken="dom0-http-broken" in self.faults)
        return 0, f"{hashlib.sha256(body).hexdigest()}  -\n"

    def _ls(self, m: re.Match[str]) -> tuple[int, str]:
        pattern = re.escape(m[1]).replace(r"\*", ".*")
        found = sorted(p for p in self.files if re.fullmatch(pattern, p))
        return (0, "".join(p + "\n" for p in found)) if found else (2, "")

    def _brif(self, _: re.Match[str]) -> tuple[int, str]:
        ports = list(self.bridge_ports)
        if "vif-missing" not in self.faults:
            ports += [f"vif{g.domid}.0" for g in self.guests.values()]
        return 0, "\n".join(ports) + "\n"

    # a guest's commands -----------------------------------------------------------
    def guest(self, name: str, command: str) -> tuple[int, str]:
        self.log.append(f"{name}$ {command}")
        guest = self.guests[name]
        if command == "cat /proc/cmdline":
            return 0, guest.cmdline + "\n"
        if command == "stat -c %d /":
            major, minor = guest.root_dev.split(":")
            return 0, f"{os.makedev(int(major), int(minor))}\n"
        if command == "cat /sys/class/block/xvda/dev":
            return 0, "202:0\n"
        if command == "cat /etc/hostname 2>/dev/null || true":
            return 0, guest.hostname + "\n"
        if command.startswith("ip -4 -o addr show"):
            return 0, f"1: lo    inet 127.0.0.1/8 scope host lo\n2: eth0    inet {guest.address} scope global eth0\n"
        fetch = re.fullmatch(r"wget -q -O - (\S+) \| sha256sum", command)
        if fetch and self.http is not None:
            body = self.http.fetch(fetch[1], broken="http-broken" in self.faults)
            return 0, f"{hashlib.sha256(body).hexdigest()}  -\n"
        raise AssertionError(f"unexpected guest command {command!r}")


    # Xen's serial console (dom0less domains' virtual UARTs) ---------------------------
    def serial_input(self, text: str) -> None:
        if text == "\x01\x01\x01":
            order = [0, *self.dom0less_ids, -1]
            self.serial_focus = order[(order.index(self.serial_focus) + 1) % len(order)]
            target = "Xen" if self.serial_focus == -1 else f"DOM{self.serial_focus}"
            self.serial_out += f"(XEN) *** Serial input to {target} (type 'CTRL-a' three times to switch input)\n"
            return
        guest = next((g for g in self.guests.values() if g.domid == self.serial_focus), None)
        if guest is None or "uart-silent" in self.faults:
            return
        self.log.append(f"uart {guest.name}: {text.strip()}")
        if text == "\n":
            self.serial_out += f"(XEN) {guest.hostname} login: "
        elif text == "root\n":
            self.serial_out += f"root\n(XEN) root@{guest.hostname}:~# "
        elif text.startswith("echo CMDLINE:$(cat /proc/cmdline):END"):
            half = len(guest.cmdline) // 2  # Xen cuts a long line with "(XEN) "
            self.serial_out += (f"{text}(XEN) CMDLINE:{guest.cmdline[:half]}(XEN) {guest.cmdline[half:]}:END\n"
                                f"(XEN) root@{guest.hostname}:~# ")


class FakeHttp:
    """An HttpSource whose "network" is FakeXen's wget."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.seen: list[tuple[str, str]] = []

    def publish(self, label: str) -> Published:
        body = os.urandom(64)
        path = f"/{label}.bin"
        self.files[path] = body
        return Published(f"http://10.0.2.2:8000{path}", path, hashlib.sha256(body).hexdigest())

    def requests(self) -> list[tuple[str, str]]:
        return list(self.seen)

    def fetch(self, url: str, broken: bool) -> bytes:
        path = url.split(":8000", 1)[1]
        if broken:
            return b""
        self.seen.append(("127.0.0.1", path))
        return self.files[path]


class FakeChannel:
    """Stands in for a ConsoleChannel: commands go to FakeXen (dom0 or one guest)."""

    def __init__(self, xen: FakeXen, guest: str | None = None, parent: FakeChannel | None = None) -> None:
        self.xen = xen
        self.guest = guest
        self.parent = parent
        self.name = f"guest:{guest}" if guest else "dom0"
        self.syncs = 0
        self.closed = False
        self.pending = ""  # serial input not yet at the end of a line

    def run(self, command: str, timeout: float | None = None, check: bool = False) -> CommandResult:
        if self.closed:
            raise ConsoleClosed("the console closed (end of file)")
        out = ""
        for index, part in enumerate(command.split(PART)):
            status, text = self.xen.guest(self.guest, part) if self.guest else self.xen.dom0(part)
            out += text
            if status != 0:
                return CommandResult(status, out, command)
            if index < len(command.split(PART)) - 1:
                out += "--xq-part--\n"
        return CommandResult(0, out, command)

    def start(self, command: str) -> None:
        assert command == "poweroff" and self.guest is None, command
        self.xen.log.append(command)
        self.xen.powered_off = True

    def sync(self, timeout: float = 30.0) -> str:
        self.syncs += 1
        return ""

    def send_raw(self, text: str) -> None:
        self.pending += text
        if text == "\x01\x01\x01" or text.endswith("\n"):  # a line reaches the fake at its end
            self.xen.serial_input(self.pending)
            self.pending = ""

    def expect(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        match = re.search(pattern, self.xen.serial_out)
        if match is None:
            raise ConsoleTimeout(f"{pattern!r} not seen in {self.xen.serial_out[-200:]!r}")
        self.xen.serial_out = self.xen.serial_out[match.end():]
        return match

    def resync(self, timeout: float = 30.0) -> None:
        pass


class FakeXl(Xl):
    """Xl with the console attach/detach of FakeChannel (Ctrl-] mechanics are tested in tests/harness)."""

    def attach(self, command: str, name: str, *, user: str = "root", password: str | None = None,
               boot_timeout: float | None = None) -> FakeChannel:  # type: ignore[override]
        xen: FakeXen = self.channel.xen  # type: ignore[attr-defined]
        if "console-fails" in xen.faults or name not in xen.guests:
            raise ConsoleError(f"guest:{name}: the console command returned to dom0's shell")
        xen.log.append(f"attach {name}")
        return FakeChannel(xen, name, parent=self.channel)  # type: ignore[arg-type]

    def detach(self, guest: FakeChannel, timeout: float = 60.0) -> None:  # type: ignore[override]
        if "detach-fails" in guest.xen.faults:
            raise ConsoleError(f"{guest.name}: detach with Ctrl-] did not return to dom0")
        guest.xen.log.append(f"detach {guest.guest}")


def run(xen: FakeXen, **options: object) -> LifecycleReport:
    console = FakeChannel(xen)
    settings = {"http": xen.http, "expected_hostname": lambda name: name, "dhcp_timeout": 0.3,
                "memory_timeout": 0.3, "xl_timeout": 0.3}
    settings.update(options)
    return run_lifecycle(console, LifecycleOptions(**settings), xl=FakeXl(console))  # type: ignore[arg-type]


def host_with(*names: str, memory: int = 128) -> FakeXen:
    xen = FakeXen(http=FakeHttp())
    for name in names:
        xen.add_config(name, memory)
    return xen


def outcomes(report: LifecycleReport, subject: str) -> dict[str, str]:
    return {r.step: r.outcome.value for r in report.of(subject)}


GUEST_STEP_NAMES = ["config", "create", "unpause", "console", "cmdline", "root device", "network", "http", "detach",
                    "state", "destroy", "gone", "memory back"]


def test_every_step_passes_on_a_good_host() -> None:
    xen = host_with("alpha", "beta")
    report = run(xen)
    assert report.ok, report.summary()
    assert [r.step for r in report.of("dom0")] == ["toolstack", "dom0", "bridge", "http", "guest configs",
                                                   "autostart", "dom0less", "poweroff"]
    assert outcomes(report, "dom0")["autostart"] == "SKIP"
    assert next(r.detail for r in report.of("dom0") if r.step == "dom0less") == \
        "the target has no dom0less domain (QB_XEN_DOM0LESS is empty)"
    for name in ("alpha", "beta"):
        assert [r.step for r in report.of(name)] == GUEST_STEP_NAMES
        assert set(outcomes(report, name).values()) == {"PASS"}
    assert xen.guests == {} and xen.free == 622
    assert ("127.0.0.1", "/alpha.bin") in xen.http.seen  # type: ignore[union-attr]
    assert "lifecycle OK" in report.summary()


def test_guests_that_fit_are_created_together_then_checked_one_by_one() -> None:
    xen = host_with("alpha", "beta", "gamma")
    report = run(xen)
    assert report.ok, report.summary()
    events = [c for c in xen.log if c.startswith(("xl create -p", "xl unpause", "attach", "detach", "xl destroy"))]
    assert [e.split()[-1].rsplit("-", 1)[-1].removesuffix(".cfg") if e.startswith("xl create") else
            " ".join(e.split()[:2]) if e.startswith("xl") else e for e in events] == [
        "alpha", "beta", "gamma",                                   # all created (paused) first
        "xl unpause", "attach alpha", "detach alpha",               # alpha boots and is checked
        "xl unpause", "xl destroy",                                  # beta boots while alpha is destroyed
        "attach beta", "detach beta", "xl unpause", "xl destroy",
        "attach gamma", "detach gamma", "xl destroy"]
    unpaused = [c.split()[-1] for c in xen.log if c.startswith("xl unpause")]
    assert unpaused == ["alpha", "beta", "gamma"]


def test_a_guest_that_fails_early_lets_the_next_one_boot() -> None:
    xen = host_with("alpha", "beta")
    xen.faults.add("console-fails")
    report = run(xen)
    assert [report.failed_step(n).step for n in ("alpha", "beta")] == ["console", "console"]  # type: ignore[union-attr]
    assert [c.split()[-1] for c in xen.log if c.startswith("xl unpause")] == ["alpha", "beta"]
    assert xen.guests == {}


def test_sequential_run_finishes_each_guest_before_the_next() -> None:
    xen = host_with("alpha", "beta")
    report = run(xen, concurrent=False)
    assert report.ok, report.summary()
    order = [c.split()[1] for c in xen.log if c.startswith(("xl create", "xl destroy"))]
    assert order == ["create", "destroy", "create", "destroy"]


def test_guests_that_do_not_fit_together_go_in_separate_batches() -> None:
    assert plan_batches([128, 128, 128], free_mib=622) == [[0, 1, 2]]
    assert plan_batches([300, 300, 100], free_mib=600) == [[0], [1, 2]]
    assert plan_batches([700, 100], free_mib=622) == [[0], [1]]
    assert plan_batches([128, 128], free_mib=622, concurrent=False) == [[0], [1]]
    xen = host_with("alpha", "beta", memory=320)
    report = run(xen)
    assert report.ok, report.summary()
    first_destroy = next(i for i, c in enumerate(xen.log) if c.startswith("xl destroy"))
    second_create = [i for i, c in enumerate(xen.log) if c.startswith("xl create")][1]
    assert first_destroy < second_create


def test_host_failure_ends_the_run() -> None:
    xen = host_with("alpha")
    xen.faults.add("info-incomplete")
    report = run(xen)
    assert not report.ok
    assert outcomes(report, "dom0") == {"toolstack": "FAIL", "dom0": "NOT RUN", "bridge": "NOT RUN",
                                        "http": "NOT RUN", "guest configs": "NOT RUN", "autostart": "NOT RUN",
                                        "dom0less": "NOT RUN", "poweroff": "NOT RUN"}
    assert "nr_cpus" in report.failed_step("dom0").detail  # type: ignore[union-attr]
    assert not any(c.startswith("xl create") for c in xen.log)


def test_dom0_memory_must_match_dom0_mem() -> None:
    xen = host_with("alpha")
    xen.dom0_mem = 512
    report = run(xen)
    failed = report.failed_step("dom0")
    assert failed is not None and failed.step == "dom0" and "384 MiB" in failed.detail


def test_bridge_without_uplink_or_address_fails() -> None:
    xen = host_with("alpha")
    xen.bridge_ports = []
    assert run(xen).failed_step("dom0").step == "bridge"  # type: ignore[union-attr]
    xen = host_with("alpha")
    xen.faults.add("no-dhcp")
    failed = run(xen).failed_step("dom0")
    assert failed is not None and failed.step == "bridge" and "no IPv4 address" in failed.detail


def test_no_network_skips_the_network_steps_with_a_reason() -> None:
    xen = host_with("alpha")
    report = run(xen, network=False)
    assert report.ok, report.summary()
    assert outcomes(report, "dom0")["bridge"] == "SKIP"
    assert outcomes(report, "alpha")["network"] == "SKIP"
    assert outcomes(report, "alpha")["http"] == "SKIP"
    assert "does not check the network" in next(r.detail for r in report.of("alpha") if r.step == "network")


def test_no_http_server_skips_only_the_fetch() -> None:
    xen = host_with("alpha")
    report = run(xen, http=None)
    assert report.ok
    assert outcomes(report, "alpha")["http"] == "SKIP" and outcomes(report, "alpha")["network"] == "PASS"
    assert "no HTTP server" in next(r.detail for r in report.of("alpha") if r.step == "http")


def test_no_config_at_all_fails() -> None:
    report = run(FakeXen(http=FakeHttp()))
    failed = report.failed_step("dom0")
    assert failed is not None and failed.step == "guest configs" and "bundle a guest" in failed.detail


def test_given_configs_are_used_instead_of_the_glob() -> None:
    xen = host_with("alpha", "beta")
    report = run(xen, guests=["/etc/xen/xen-guest-bundle-beta.cfg"])
    assert report.subjects() == ["dom0", "beta"]


def expect_guest_failure(xen: FakeXen, step: str, subject: str = "alpha", **options: object) -> str:
    """Run; ``step`` of ``subject`` fails, later steps are NOT RUN, no guest is left, memory is back."""
    report = run(xen, **options)
    assert not report.ok
    failed = report.failed_step(subject)
    assert failed is not None and failed.step == step, report.summary()
    after = GUEST_STEP_NAMES[GUEST_STEP_NAMES.index(step) + 1:]
    assert [r.outcome for r in report.of(subject) if r.step in after] == [Outcome.NOT_RUN] * len(after)
    assert all(f"'{step}' failed" in r.detail for r in report.of(subject) if r.step in after)
    if "zombie" not in xen.faults:
        assert subject not in xen.guests, "the failed guest must be destroyed"
    return failed.detail


def test_unparseable_config_fails_at_config_with_the_line() -> None:
    xen = host_with()
    xen.add_config("alpha", text='name = "alpha"\nmemory = [oops\n')
    detail = expect_guest_failure(xen, "config", subject="xen-guest-bundle-alpha.cfg")
    assert "line 2" in detail or ":2" in detail


def test_config_without_a_name_fails() -> None:
    xen = host_with()
    xen.add_config("alpha", text='memory = 128\n')
    detail = expect_guest_failure(xen, "config", subject="xen-guest-bundle-alpha.cfg")
    assert "no name" in detail


def test_guest_that_already_exists_fails_at_config() -> None:
    xen = host_with("alpha")
    xen.guests["alpha"] = Guest("alpha", 7, 128, "", "alpha")
    report = run(xen)
    assert report.failed_step("alpha").step == "config"  # type: ignore[union-attr]
    assert "already exists" in report.failed_step("alpha").detail  # type: ignore[union-attr]
    assert "alpha" in xen.guests, "a guest the run did not create is not destroyed"


def autostarted(xen: FakeXen, name: str, state: str = "-b----") -> None:
    """``name`` is linked from /etc/xen/auto and xendomains started it at boot."""
    path = xen.add_config(name)
    xen.auto_links[f"/etc/xen/auto/{name}.cfg"] = path
    xen.guests[name] = Guest(name, xen.next_id, 128, "root=/dev/xvda console=hvc0 rw quiet", name, state=state)
    xen.next_id += 1
    xen.free -= 129


def test_a_guest_started_at_boot_is_checked_without_xl_create_and_destroyed() -> None:
    xen = host_with("alpha")
    autostarted(xen, "auto")
    free_with_autostart = xen.free
    report = run(xen)
    assert report.ok, report.summary()
    assert outcomes(report, "dom0")["autostart"] == "PASS"
    assert "auto (domain 1, -b----)" in next(r.detail for r in report.of("dom0") if r.step == "autostart")
    steps = outcomes(report, "auto")
    assert steps["create"] == steps["unpause"] == "SKIP"
    assert {steps[s] for s in GUEST_STEP_NAMES if s not in ("create", "unpause")} == {"PASS"}
    assert not any(c.startswith(("xl create -p /etc/xen/xen-guest-bundle-auto", "xl unpause auto")) for c in xen.log)
    assert "attach auto" in xen.log and "xl destroy auto" in xen.log
    assert xen.guests == {} and xen.free == free_with_autostart + 129


class FakePoweroff:
    """A PoweroffProbe: records what it was asked; fails when told to."""

    def __init__(self, xen: FakeXen, problem: str = "") -> None:
        self.xen, self.problem = xen, problem
        self.asked: list[tuple[list[str], float]] = []

    def __call__(self, running: object, timeout: float) -> str:
        assert self.xen.powered_off, "the probe runs after dom0's poweroff"
        names = [g.name for g in running]  # type: ignore[attr-defined]
        self.asked.append((names, timeout))
        if self.problem:
            raise LifecycleFailure("poweroff", self.problem)
        return "clean"


def test_with_poweroff_the_guests_started_at_boot_stay_up_until_poweroff() -> None:
    xen = host_with("alpha")
    autostarted(xen, "auto")
    probe = FakePoweroff(xen)
    report = run(xen, poweroff=probe, poweroff_timeout=7.0)
    assert report.ok, report.summary()
    steps = outcomes(report, "auto")
    assert steps["destroy"] == steps["gone"] == steps["memory back"] == "SKIP"
    assert outcomes(report, "alpha")["destroy"] == "PASS"
    assert "xl destroy auto" not in xen.log and xen.log[-1] == "poweroff"
    assert probe.asked == [(["auto"], 7.0)]
    assert outcomes(report, "dom0")["poweroff"] == "PASS"


def test_a_guest_not_shut_down_cleanly_fails_the_poweroff_step() -> None:
    xen = host_with()
    autostarted(xen, "auto")
    report = run(xen, poweroff=FakePoweroff(xen, "auto: its disk was not left clean"))
    failed = report.failed_step("dom0")
    assert failed is not None and failed.step == "poweroff" and "not left clean" in failed.detail


def test_without_a_probe_there_is_no_poweroff_and_every_guest_is_destroyed() -> None:
    xen = host_with()
    autostarted(xen, "auto")
    report = run(xen)
    assert report.ok and outcomes(report, "dom0")["poweroff"] == "SKIP"
    assert not xen.powered_off and xen.guests == {}


def test_dom0_fetches_over_http_and_a_wrong_checksum_fails() -> None:
    xen = host_with("alpha")
    report = run(xen)
    assert outcomes(report, "dom0")["http"] == "PASS"
    assert ("127.0.0.1", "/dom0.bin") in xen.http.seen  # type: ignore[union-attr]
    xen = host_with("alpha")
    xen.faults.add("dom0-http-broken")
    failed = run(xen).failed_step("dom0")
    assert failed is not None and failed.step == "http" and "expected" in failed.detail


def test_an_inactive_xendomains_fails_the_autostart_step() -> None:
    xen = host_with()
    autostarted(xen, "auto")
    xen.xendomains = "failed"
    failed = run(xen).failed_step("dom0")
    assert failed is not None and "xendomains.service is failed" in failed.detail


def test_an_autostart_guest_that_is_not_running_fails_the_autostart_step() -> None:
    xen = host_with("alpha")
    autostarted(xen, "auto")
    del xen.guests["auto"]
    report = run(xen)
    failed = report.failed_step("dom0")
    assert failed is not None and failed.step == "autostart"
    assert "auto (/etc/xen/xen-guest-bundle-auto.cfg) is not running after boot" in failed.detail
    assert "systemctl status xendomains" in failed.detail, "nothing journaled: where to look"


def test_the_autostart_failure_quotes_what_xendomains_logged() -> None:
    xen = host_with("alpha")
    autostarted(xen, "auto")
    del xen.guests["auto"]
    xen.xendomains_journal = ("Starting auto\nlibxl: error: libxl_device.c:1180:device_backend_callback: "
                              "Domain 3:unable to add device with path /local/domain/0/backend/vbd/3/51712\n")
    failed = run(xen).failed_step("dom0")
    assert failed is not None and failed.step == "autostart"
    assert "xendomains' journal (last lines):\nStarting auto\nlibxl: error: libxl_device.c:1180" in failed.detail


def test_a_dangling_autostart_link_fails_the_autostart_step() -> None:
    xen = host_with("alpha")
    xen.auto_links["/etc/xen/auto/gone.cfg"] = "/etc/xen/gone.cfg"
    failed = run(xen).failed_step("dom0")
    assert failed is not None and failed.step == "autostart"
    assert "/etc/xen/gone.cfg (linked from /etc/xen/auto) cannot be read: a dangling link" in failed.detail


def test_a_paused_autostart_guest_fails_the_autostart_step() -> None:
    xen = host_with()
    autostarted(xen, "auto", state="--p---")
    failed = run(xen).failed_step("dom0")
    assert failed is not None and "is --p--- after boot" in failed.detail


def test_failed_xl_create_fails_at_create() -> None:
    xen = host_with("alpha")
    xen.faults.add("missing-disk")
    assert "No such file" in expect_guest_failure(xen, "create")


def test_memory_not_taken_by_the_guest_fails_at_create() -> None:
    xen = host_with("alpha")
    xen.faults.add("memory-not-taken")
    assert "took only 0 MiB" in expect_guest_failure(xen, "create")


def test_guest_that_crashes_when_unpaused_fails_at_unpause() -> None:
    xen = host_with("alpha")
    xen.faults.add("crashed")
    assert "-----c" in expect_guest_failure(xen, "unpause")


def test_console_that_does_not_reach_the_guest_fails_and_cleans_up() -> None:
    xen = host_with("alpha", "beta")
    xen.faults.add("console-fails")
    report = run(xen)
    for name in ("alpha", "beta"):
        assert report.failed_step(name).step == "console"  # type: ignore[union-attr]
    assert xen.guests == {}


def test_wrong_kernel_command_line_fails_at_cmdline() -> None:
    xen = host_with("alpha")
    xen.faults.add("wrong-cmdline")
    detail = expect_guest_failure(xen, "cmdline")
    assert "root=/dev/xvda console=hvc0 rw quiet" in detail, "the expected line is root= + extra, as xl builds it"
    assert "detach alpha" in xen.log, "the guest console is left before the guest is destroyed"


def test_other_guests_disk_fails_at_root_device_naming_it() -> None:
    xen = host_with("alpha")
    xen.faults.add("other-disk")
    detail = expect_guest_failure(xen, "root device")
    assert "someone-else" in detail and "alpha.ext4" in detail


def test_root_not_mounted_from_the_root_device_fails() -> None:
    xen = host_with("alpha")
    xen.faults.add("wrong-root")
    assert "not mounted from /dev/xvda" in expect_guest_failure(xen, "root device")


def test_root_device_that_is_not_the_disk_fails() -> None:
    xen = host_with()
    xen.add_config("alpha", text=CONFIG.format(name="alpha", memory=128).replace('"/dev/xvda"', '"/dev/xvdb"'))
    assert "first disk is /dev/xvda" in expect_guest_failure(xen, "root device")


def test_unknown_hostname_is_said_not_checked() -> None:
    xen = host_with("alpha")
    xen.faults.add("other-disk")
    report = run(xen, expected_hostname=None)
    assert report.ok
    assert "hostname not checked" in next(r.detail for r in report.of("alpha") if r.step == "root device")


def test_guest_without_disk_skips_the_root_device() -> None:
    xen = host_with()
    xen.add_config("alpha", text=re.sub(r"(?m)^(disk|root) = .*\n", "", CONFIG.format(name="alpha", memory=64)))
    report = run(xen)
    assert outcomes(report, "alpha")["root device"] == "SKIP"
    assert report.ok, report.summary()


def test_address_off_the_bridge_subnet_fails_at_network() -> None:
    xen = host_with("alpha")
    xen.faults.add("off-subnet")
    assert "no address on 10.0.2.15/24" in expect_guest_failure(xen, "network")


def test_guest_without_vif_skips_network_and_http() -> None:
    xen = host_with()
    xen.add_config("alpha", text=re.sub(r"(?m)^vif = .*\n", "", CONFIG.format(name="alpha", memory=64)))
    report = run(xen)
    assert report.ok, report.summary()
    assert outcomes(report, "alpha")["network"] == "SKIP" and outcomes(report, "alpha")["http"] == "SKIP"


def test_fetch_with_wrong_content_fails_at_http() -> None:
    xen = host_with("alpha")
    xen.faults.add("http-broken")
    detail = expect_guest_failure(xen, "http")
    assert "did not see the request" in detail


def test_detach_failure_fails_at_detach() -> None:
    xen = host_with("alpha")
    xen.faults.add("detach-fails")
    expect_guest_failure(xen, "detach")


def test_vif_missing_from_the_bridge_fails_at_state() -> None:
    xen = host_with("alpha")
    xen.faults.add("vif-missing")
    assert "vif1.0 not on xenbr0" in expect_guest_failure(xen, "state")


def test_failed_destroy_fails_at_destroy() -> None:
    xen = host_with("alpha")
    xen.faults.add("destroy-fails")
    report = run(xen)
    assert report.failed_step("alpha").step == "destroy"  # type: ignore[union-attr]


def test_domain_still_listed_fails_at_gone() -> None:
    xen = host_with("alpha")
    xen.faults.add("zombie")
    assert "still listed" in expect_guest_failure(xen, "gone")


def test_memory_that_does_not_come_back_fails_at_memory_back() -> None:
    xen = host_with("alpha")
    xen.faults.add("memory-leak")
    detail = expect_guest_failure(xen, "memory back")
    assert "wanted at least" in detail


def test_one_failing_guest_does_not_stop_the_others() -> None:
    xen = host_with("alpha", "beta")
    xen.files["/etc/xen/xen-guest-bundle-alpha.cfg"] = xen.files["/etc/xen/xen-guest-bundle-alpha.cfg"].replace(
        '"/dev/xvda"', '"/dev/xvdb"')
    report = run(xen)
    assert report.failed_step("alpha").step == "root device"  # type: ignore[union-attr]
    assert set(outcomes(report, "beta").values()) == {"PASS"}
    assert xen.guests == {} and xen.free == 622


def test_closed_console_ends_everything_as_not_run() -> None:
    xen = host_with("alpha", "beta")
    console = FakeChannel(xen)
    original = xen.guest

    def dying(name: str, command: str) -> tuple[int, str]:
        if command == "cat /proc/cmdline":
            console.closed = True
            raise ConsoleClosed("the console closed (end of file)")
        return original(name, command)

    xen.guest = dying  # type: ignore[method-assign]
    report = run_lifecycle(console, LifecycleOptions(http=xen.http), xl=FakeXl(console))  # type: ignore[arg-type]
    assert report.failed_step("alpha").step == "cmdline"  # type: ignore[union-attr]
    later = [r for r in report.results if r.outcome is Outcome.NOT_RUN]
    assert later and all("console closed" in r.detail for r in later)
    assert {r.subject for r in later} == {"alpha", "beta", "dom0"}  # dom0: the final steps


def test_results_are_reported_as_they_come() -> None:
    xen = host_with("alpha")
    seen: list[str] = []
    console = FakeChannel(xen)
    run_lifecycle(console, LifecycleOptions(http=xen.http), xl=FakeXl(console),  # type: ignore[arg-type]
                  on_result=lambda r: seen.append(r.line()))
    assert seen[0].startswith("PASS dom0: toolstack (") and "Xen 4.17.7" in seen[0]
    assert len(seen) == 8 + len(GUEST_STEP_NAMES)


def test_guest_config_follows_xl() -> None:
    text = CONFIG.format(name="alpha", memory=256)
    config = GuestConfig.from_text(text, "/etc/xen/a.cfg")
    assert config.cmdline == "root=/dev/xvda console=hvc0 rw quiet"
    assert (config.root_device, config.disk_device) == ("/dev/xvda", "/dev/xvda")
    assert config.memory_mib == 256 and config.vif_bridges == ("xenbr0",)
    assert "/var/lib/xen/images/alpha.ext4" in config.files and "/var/lib/xen/images/Image" in config.files
    with_cmdline = GuestConfig.from_text(text + 'cmdline = "console=hvc0 root=/dev/xvda2"\n', "a.cfg")
    assert with_cmdline.cmdline == "console=hvc0 root=/dev/xvda2", "cmdline wins over root and extra"
    assert GuestConfig.from_text('name = "x"\nextra = "quiet"\n', "a.cfg").cmdline == "quiet"
    assert GuestConfig.from_text('name = "x"\nroot = "/dev/xvda"\n', "a.cfg").cmdline == "root=/dev/xvda"
    bare = GuestConfig.from_text('name = "x"\nvif = ["mac=00:16:3e:00:00:01"]\nmaxmem = 512\n', "a.cfg")
    assert bare.memory_mib == 32 and bare.max_memory_mib == 512 and bare.vif_bridges == ("xenbr0",)
    with pytest.raises(LifecycleFailure, match="not a number"):
        GuestConfig.from_text('name = "x"\nmemory = "lots"\n', "a.cfg")


@pytest.mark.parametrize("cmdline, expected", [
    ("dom0_mem=384M,max:384M bootscrub=0 console=dtuart", 384),
    ("console=dtuart dom0_mem=max:512M,1G", 1024),
    ("dom0_mem=524288K", 512),
    ("dom0_mem=min:128M,max:256M", None),
    ("bootscrub=0 console=dtuart", None),
])
def test_dom0_memory_from_the_xen_command_line(cmdline: str, expected: int | None) -> None:
    assert dom0_memory_mib(cmdline) == expected


def test_address_and_root_helpers() -> None:
    output = "3: xenbr0    inet 10.0.2.15/24 brd 10.0.2.255 scope global dynamic xenbr0\\  valid_lft"
    assert ipv4_addresses(output) == [("10.0.2.15", 24)]
    assert ipv4_addresses("") == []
    assert same_subnet("10.0.2.16", "10.0.2.15", 24)
    assert not same_subnet("10.0.3.16", "10.0.2.15", 24)
    assert kernel_root_device("console=hvc0 root=/dev/xvda rw") == "/dev/xvda"
    assert kernel_root_device("console=hvc0") is None
    with pytest.raises(ValueError):
        parse_size_mib("lots")


def test_xl_error_is_a_harness_error() -> None:
    from xenqemu.errors import XenqemuError
    assert issubclass(XlError, XenqemuError) and issubclass(LifecycleFailure, XenqemuError)


DOM0LESS_CMDLINE = "console=ttyAMA0 rdinit=/sbin/init quiet xen-ref-dom0less=1"


def dom0less_host(*configs: str) -> FakeXen:
    """A host where Xen started ``dom0less-1`` from the device tree and init-dom0less named it."""
    xen = host_with(*configs)
    xen.guests["dom0less-1"] = Guest("dom0less-1", 1, 96, DOM0LESS_CMDLINE, "dom0less-guest")
    xen.dom0less_ids = [1]
    xen.next_id = 2
    xen.free -= 97
    return xen


def run_dom0less(xen: FakeXen, cmdline: str = DOM0LESS_CMDLINE) -> LifecycleReport:
    return run(xen, dom0less=(("dom0less-guest", cmdline),), command_timeout=0.3)


def test_a_dom0less_domain_is_listed_answers_on_its_uart_and_is_destroyed() -> None:
    xen = dom0less_host("alpha")
    free_with_dom0less = xen.free
    report = run_dom0less(xen)
    assert report.ok, report.summary()
    step = next(r for r in report.of("dom0") if r.step == "dom0less")
    assert (step.step, step.outcome.value) == ("dom0less", "PASS")
    assert step.detail == f"dom0less-guest (dom0less-1): {DOM0LESS_CMDLINE!r}, destroyed, its memory back"
    assert "uart dom0less-1: root" in xen.log and "xl destroy dom0less-1" in " ".join(xen.log)
    assert xen.serial_focus == 0, "the serial input must be back with dom0"
    assert "dom0less-1" not in xen.guests and xen.free == free_with_dom0less + 97 + 0
    destroyed = next(i for i, c in enumerate(xen.log) if "xl destroy dom0less-1" in c)
    assert destroyed > xen.log.index("xl destroy alpha"), \
        "the dom0less domain is checked after the xl guests (a final step: its failure cannot stop them)"
    assert set(outcomes(report, "alpha").values()) == {"PASS"}


def test_a_dom0less_domain_that_init_dom0less_did_not_introduce_fails_naming_the_unit() -> None:
    xen = dom0less_host("alpha")
    unnamed = xen.guests.pop("dom0less-1")
    unnamed.name = "(null)"  # what xl shows for a domain without xenstore entries
    xen.guests[unnamed.name] = unnamed
    failed = run_dom0less(xen).failed_step("dom0")
    assert failed is not None and failed.step == "dom0less"
    assert "'dom0less-guest' is not listed as dom0less-1 (ID 1)" in failed.detail
    assert "xen-init-dom0less.service" in failed.detail


def test_a_dom0less_domain_with_another_command_line_fails() -> None:
    failed = run_dom0less(dom0less_host("alpha"), cmdline="console=ttyAMA0 other").failed_step("dom0")
    assert failed is not None and failed.step == "dom0less"
    assert f"runs with {DOM0LESS_CMDLINE!r}, its device tree node gives 'console=ttyAMA0 other'" in failed.detail


def test_a_silent_dom0less_console_fails_and_gives_the_serial_input_back_to_dom0() -> None:
    xen = dom0less_host("alpha")
    xen.faults.add("uart-silent")
    report = run_dom0less(xen)
    failed = report.failed_step("dom0")
    assert failed is not None and failed.step == "dom0less" and "login: " in failed.detail
    assert xen.serial_focus == 0


def test_a_paused_dom0less_domain_fails() -> None:
    xen = dom0less_host("alpha")
    xen.guests["dom0less-1"].state = "--p---"
    failed = run_dom0less(xen).failed_step("dom0")
    assert failed is not None and "dom0less-1 ('dom0less-guest') is in state --p---" in failed.detail
