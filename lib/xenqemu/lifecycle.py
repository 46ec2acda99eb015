"""The guest lifecycle check: named steps with one pass rule each, run on a booted Xen host.

One implementation, run by ``xenqemu lifecycle`` (the main job), the end-to-end tests and the
OEQA runtime suite ``xen`` (through its console adapter over oe-core's QemuRunner).  All it needs
is a logged-in dom0 :class:`~xenqemu.console.ConsoleChannel`::

    report = run_lifecycle(console, LifecycleOptions(http=server, expected_hostname=lambda n: n))
    assert report.ok, report.summary()

The steps (:data:`HOST_STEPS`, then :data:`GUEST_STEPS` for every guest config, then
:data:`FINAL_STEPS`) and their pass rules are listed in :data:`DEFAULT_PLAN` and in
docs/harness.md.  Each step reports PASS, FAIL or SKIP (with the reason: the caller said it
cannot check that, or the config has nothing to check) and its duration.  A failed step ends
that guest: the guest is detached and destroyed, and its remaining steps are reported as
NOT RUN.  A failed host step ends the run.

Extending it: a step is a :class:`Step` (name, pass rule, ``check(context) -> detail`` that
raises :class:`LifecycleFailure` or :class:`StepSkipped`); a :class:`LifecyclePlan` holds the
host steps run before the guests, the guest steps and the final host steps.  A new check is one
function and one entry in a plan (``LifecyclePlan(host=HOST_STEPS + (autostart,), ...)``).

Concurrency: guests whose memory fits into Xen's free memory together are created paused one
after the other ("start" stage), then checked one at a time (one serial console): each next
guest is unpaused ("boot") as soon as the previous one is detached, so its boot overlaps the
previous guest's state check, destroy and memory check (dom0's work).  At most two guests run at
once: on a 2-core TCG host, more guests booting together only slowed each other down (measured:
docs/harness.md).
"""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import shlex
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Generic, Protocol, TypeVar, final
from xml.etree import ElementTree

from xenbundle.disk import DiskSpecError, parse_disk
from xenbundle.xlcfg import XlConfigError
from xenbundle.xlcfg import parse as parse_xl_config

from .console import ConsoleChannel, ConsoleClosed, ConsoleError
from .errors import XenqemuError
from .xl import (
    Domain,
    Xl,
    backoff,
    free_memory_of,
    parse_xl_info,
    parse_xl_list,
    run_parts,
)

__all__ = [
    "DEFAULT_PLAN",
    "FILES_STEP",
    "FINAL_STEPS",
    "GUEST_STEPS",
    "HOST_STEPS",
    "GuestConfig",
    "GuestRun",
    "HostRun",
    "HttpSource",
    "LifecycleFailure",
    "LifecycleOptions",
    "LifecyclePlan",
    "LifecycleReport",
    "LoopbackHttpServer",
    "Outcome",
    "PoweroffProbe",
    "Published",
    "Step",
    "StepResult",
    "StepSkipped",
    "dom0_memory_mib",
    "ipv4_addresses",
    "kernel_root_device",
    "plan_batches",
    "run_lifecycle",
    "same_subnet",
]

#: Xen's per-guest memory beyond the guest's own pages (page tables, grant tables), for planning.
GUEST_OVERHEAD_MIB = 8
#: xl's default ``memory`` when a config sets none (libxl's default for max_memkb).
XL_DEFAULT_MEMORY_MIB = 32
#: ``xl list`` rounds memory to MiB and Xen keeps a few pages of dom0's allocation for itself.
DOM0_MEMORY_TOLERANCE_MIB = 2


class LifecycleFailure(XenqemuError):
    """A step's pass rule does not hold; ``step`` names the step, ``detail`` says what was seen."""

    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"lifecycle step '{step}' failed: {detail}")
        self.step = step
        self.detail = detail


class StepSkipped(XenqemuError):
    """A step cannot be checked here (an option or the config says so); ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Outcome(str, Enum):
    """What became of a step."""

    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"
    NOT_RUN = "NOT RUN"


@dataclass(frozen=True)
class StepResult:
    """One step for one subject (``dom0`` or a guest's domain name)."""

    subject: str
    step: str
    outcome: Outcome
    seconds: float = 0.0
    detail: str = ""
    rule: str = ""

    def line(self) -> str:
        """``PASS guest: step (1.2s) - first line of the detail``."""
        first = _first_line(self.detail)
        return (f"{self.outcome.value} {self.subject}: {self.step} ({self.seconds:.1f}s)"
                + (f" - {first}" if first else ""))


# ---------------------------------------------------------------------- small parsers

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}


def parse_size_mib(size: str) -> int:
    """A Xen command-line size (``384M``, ``1G``, ``524288K``, bytes without unit) in MiB."""
    match = re.fullmatch(r"\s*(\d+)\s*([bBkKmMgGtT]?)\s*", size)
    if not match:
        raise ValueError(f"not a Xen size: {size!r}")
    return int(match.group(1)) * _UNITS[match.group(2).lower()] // 1024 ** 2


def dom0_memory_mib(xen_commandline: str) -> int | None:
    """dom0's initial memory in MiB from a Xen command line, or None without a bare ``dom0_mem`` size.

    ``dom0_mem`` is a comma-separated list of ``SIZE``, ``min:SIZE`` and ``max:SIZE``; the bare
    size is the initial allocation (xen-command-line(7)).
    """
    match = re.search(r"(?:^|\s)dom0_mem=(\S+)", xen_commandline)
    if not match:
        return None
    for item in match.group(1).split(","):
        if ":" not in item:
            return parse_size_mib(item)
    return None


def ipv4_addresses(ip_addr_output: str) -> list[tuple[str, int]]:
    """``[(address, prefix_len)]`` from ``ip -4 -o addr show`` (or ``ip addr show``) output."""
    return [(addr, int(prefix)) for addr, prefix in
            re.findall(r"\binet (\d+\.\d+\.\d+\.\d+)/(\d+)", ip_addr_output)]


def same_subnet(address_a: str, address_b: str, prefix_len: int) -> bool:
    """True when both dotted-quad addresses lie in the same ``/prefix_len`` network."""
    def as_int(address: str) -> int:
        value = 0
        for part in address.split("."):
            value = value * 256 + int(part)
        return value
    mask = (0xFFFFFFFF << (32 - prefix_len)) & 0xFFFFFFFF if prefix_len else 0
    return as_int(address_a) & mask == as_int(address_b) & mask


def kernel_root_device(cmdline: str) -> str | None:
    """The ``root=`` value of a kernel command line, or None."""
    match = re.search(r"(?:^|\s)root=(\S+)", cmdline)
    return match.group(1) if match else None


# ---------------------------------------------------------------------- guest configs

@dataclass(frozen=True)
class GuestConfig:
    """What a guest booted from an xl config must show, read with the project's xl parser."""

    path: str
    name: str
    #: the kernel command line xl builds: ``cmdline``, else ``root=ROOT EXTRA`` (xl's parse_cmdline)
    cmdline: str
    root_device: str
    #: ``/dev/<vdev>`` of the first disk, and that disk's image ('' without a disk)
    disk_device: str
    disk_target: str
    memory_mib: int
    max_memory_mib: int
    #: files in dom0 the config names: kernel, ramdisk, device tree, disk images
    files: tuple[str, ...]
    #: one bridge per ``vif`` entry (xl's default bridge is xenbr0)
    vif_bridges: tuple[str, ...]

    @classmethod
    def from_text(cls, text: str, path: str) -> GuestConfig:
        """Parse ``text`` (the config at ``path`` in dom0); :class:`LifecycleFailure` when unusable."""
        try:
            settings = parse_xl_config(text if text.endswith("\n") else text + "\n", path).settings()
        except XlConfigError as err:
            raise LifecycleFailure("config", str(err)) from None
        name = settings.get("name")
        if not isinstance(name, str) or not name:
            raise LifecycleFailure("config", f"{path} has no name = \"...\" setting")
        cmdline = _xl_cmdline(settings.get("cmdline"), settings.get("root"), settings.get("extra"))
        disks = settings.get("disk") or []
        disks = disks if isinstance(disks, list) else [disks]
        try:
            parsed = [parse_disk(spec) for spec in disks if isinstance(spec, str)]
        except DiskSpecError as err:
            raise LifecycleFailure("config", f"{path}: {err}") from None
        memory = _number(settings.get("memory"), XL_DEFAULT_MEMORY_MIB, "memory", path)
        files = [v for v in (settings.get(k) for k in ("kernel", "ramdisk", "device_tree")) if isinstance(v, str)]
        files += [d.target for d in parsed if d.target]
        vifs = settings.get("vif") or []
        return cls(path=path, name=name, cmdline=cmdline, root_device=kernel_root_device(cmdline) or "",
                   disk_device=f"/dev/{parsed[0].vdev}" if parsed else "",
                   disk_target=(parsed[0].target or "") if parsed else "", memory_mib=memory,
                   max_memory_mib=max(memory, _number(settings.get("maxmem"), memory, "maxmem", path)),
                   files=tuple(files),
                   vif_bridges=tuple(_vif_bridge(v) for v in (vifs if isinstance(vifs, list) else [vifs])))


def _xl_cmdline(cmdline: object, root: object, extra: object) -> str:
    if isinstance(cmdline, str):
        return cmdline
    if isinstance(root, str):
        return f"root={root} {extra}" if isinstance(extra, str) else f"root={root}"
    return extra if isinstance(extra, str) else ""


def _number(value: object, default: int, key: str, path: str) -> int:
    if value is None:
        return default
    if not isinstance(value, str) or not value.strip().isdigit():
        raise LifecycleFailure("config", f"{path}: {key} = {value!r} is not a number of MiB")
    return int(value)


def _vif_bridge(spec: object) -> str:
    for item in str(spec).split(","):
        key, _, value = item.strip().partition("=")
        if key == "bridge" and value:
            return value
    return "xenbr0"


# ---------------------------------------------------------------------- options and contexts

@dataclass(frozen=True)
class Published:
    """A file an :class:`HttpSource` serves: its URL as the guest sees it, its path and SHA-256."""

    url: str
    path: str
    sha256: str


class HttpSource(Protocol):
    """A server the guests fetch from (see :class:`LoopbackHttpServer`)."""

    def publish(self, label: str) -> Published:
        """Serve a new file of random content; return where and what."""

    def requests(self) -> list[tuple[str, str]]:
        """(client address, path) of every request served so far."""


class PoweroffProbe(Protocol):
    """What the caller checks after dom0's ``poweroff``: it owns QEMU and the disk images.

    Called with the guests that were running at ``poweroff`` and the time bound; waits for the
    machine to stop, checks what the guests' own shutdown left on their disks, and returns a
    detail for the report, or raises :class:`LifecycleFailure` (step "poweroff").
    """

    def __call__(self, running: Sequence[GuestConfig], timeout: float) -> str: ...


@dataclass(frozen=True)
class LifecycleOptions:
    """What the caller can check, and the limits.

    ``guests``: config paths in dom0 (default: every file matching ``config_glob``).
    ``network``: check addresses (dom0's bridge by DHCP, each guest's on the bridge's subnet);
    off when the target has no network.  ``http``: a server the guests fetch a file from (None:
    the HTTP step is skipped).  ``expected_hostname(domain name)``: what the guest's disk holds
    in ``/etc/hostname`` (None: not checked).  ``concurrent``: create guests together as far as
    Xen's free memory allows.  Timeouts in seconds.
    """

    guests: Sequence[str] = ()
    config_glob: str = "/etc/xen/*.cfg"
    network: bool = True
    http: HttpSource | None = None
    expected_hostname: Callable[[str], str | None] | None = None
    password: str | None = None
    user: str = "root"
    bridge: str = "xenbr0"
    #: the folder whose links name the guests started at boot (xendomains, XEN_GUEST_AUTOSTART)
    autostart_dir: str = "/etc/xen/auto"
    concurrent: bool = True
    command_timeout: float = 120.0
    guest_boot_timeout: float = 600.0
    dhcp_timeout: float = 300.0
    memory_timeout: float = 120.0
    xl_timeout: float = 300.0
    memory_tolerance_mib: int = 4
    #: checks the host after ``poweroff`` (QEMU's exit, the guests' disks); None: no poweroff step.
    #: With it, the guests started at boot are left running for ``poweroff`` to shut down.
    poweroff: PoweroffProbe | None = None
    poweroff_timeout: float = 180.0
    #: the domains Xen starts from the device tree (dom0less), in creation order: the n-th has
    #: domain ID n; each ``(configured name, its kernel command line)`` (qemuboot.conf's
    #: ``QB_XEN_DOM0LESS``); empty: the 'dom0less' step is skipped
    dom0less: Sequence[tuple[str, str]] = ()


@dataclass
class HostRun:
    """What the host steps find out, shared with the guest steps of the run."""

    console: ConsoleChannel
    xl: Xl
    options: LifecycleOptions
    xen_info: dict[str, str] = field(default_factory=dict)
    #: dom0's address and prefix on the bridge (None when the network is not checked)
    bridge_address: tuple[str, int] | None = None
    configs: list[str] = field(default_factory=list)
    #: Xen's free memory as last measured (None: unknown, read it again)
    free_now: int | None = None
    #: Xen's free memory before the current batch of guests was created
    free_baseline: int | None = None
    alive: set[str] = field(default_factory=set)
    #: configs (resolved paths in dom0) linked from the autostart folder -> their domain names
    autostarted: dict[str, str] = field(default_factory=dict)
    #: the configs' resolved paths in dom0, by the path they were given as
    resolved: dict[str, str] = field(default_factory=dict)
    #: guests left running for the poweroff step
    kept: list[GuestConfig] = field(default_factory=list)

    def free_memory(self) -> int:
        """Xen's free memory now (MiB), read again when the last value may be stale."""
        if self.free_now is None:
            self.free_now = self.xl.free_memory()
        return self.free_now


@dataclass
class GuestRun:
    """One guest's way through the steps."""

    host: HostRun
    config_path: str
    config: GuestConfig | None = None
    domain: Domain | None = None
    shell: ConsoleChannel | None = None
    free_before_destroy: int | None = None
    #: ``xl list`` and ``xl info`` output read right after ``xl destroy`` (saves round trips)
    listing_after_destroy: str = ""
    info_after_destroy: str = ""
    failed: bool = False

    @property
    def autostarted(self) -> bool:
        """Whether the config is linked from the autostart folder (xendomains started it at boot)."""
        return self.host.resolved.get(self.config_path, self.config_path) in self.host.autostarted

    @property
    def kept_running(self) -> bool:
        """A guest started at boot stays up when the run ends with ``poweroff``, which must shut it down."""
        return self.autostarted and self.options.poweroff is not None

    @property
    def label(self) -> str:
        """The domain name once the config is read, else the config's file name."""
        return self.config.name if self.config else os.path.basename(self.config_path)

    @property
    def options(self) -> LifecycleOptions:
        """The run's options."""
        return self.host.options

    def need_config(self) -> GuestConfig:
        """The parsed config (every step after "config" has it)."""
        if self.config is None:
            raise LifecycleFailure("config", "the config was not read")
        return self.config

    def need_shell(self) -> ConsoleChannel:
        """The guest's console (steps between "console" and "detach")."""
        if self.shell is None:
            raise LifecycleFailure("console", "no guest console is attached")
        return self.shell

    def run(self, command: str) -> str:
        """Run ``command`` in the guest; its output (a non-zero status is reported by the caller)."""
        return self.need_shell().run(command, timeout=self.options.command_timeout).output


C = TypeVar("C")


@dataclass(frozen=True)
class Step(Generic[C]):
    """A named check with one pass rule.  ``check(context)`` returns a detail for the report.

    Guest steps have a ``stage``: "prepare" steps run for every guest before any guest is
    created; then, per batch of guests, the "start" steps of every guest, then guest after guest
    its "boot" and "check" steps, where a check step with ``boot_next`` runs the next guest's
    "boot" steps as soon as it passed.
    """

    name: str
    rule: str
    check: Callable[[C], str]
    stage: str = "check"
    #: once this step has passed, the next guest of the batch is unpaused (its boot overlaps the
    #: rest of this guest's steps)
    boot_next: bool = False


@dataclass(frozen=True)
class LifecyclePlan:
    """Host steps, guest steps (per guest), final host steps."""

    host: tuple[Step[HostRun], ...]
    guest: tuple[Step[GuestRun], ...]
    final: tuple[Step[HostRun], ...] = ()


def _fail(step: str, detail: str) -> LifecycleFailure:
    return LifecycleFailure(step, detail)


# ---------------------------------------------------------------------- host steps

def check_toolstack(host: HostRun) -> str:
    """``xl info`` answers with Xen's version, command line and memory figures."""
    host.xen_info = host.xl.info()
    missing = [k for k in ("xen_version", "xen_commandline", "total_memory", "free_memory", "nr_cpus")
               if k not in host.xen_info]
    if missing:
        raise _fail("toolstack", f"'xl info' lacks {', '.join(missing)}")
    host.free_now = free_memory_of(host.xen_info)
    return f"Xen {host.xen_info['xen_version']}, free_memory {host.free_now} MiB"


def check_dom0(host: HostRun) -> str:
    """Domain-0 is listed with id 0 and the memory ``dom0_mem=`` gives it (when set)."""
    domains = host.xl.list()
    dom0 = next((d for d in domains if d.name == "Domain-0"), None)
    if dom0 is None or dom0.id != 0:
        raise _fail("dom0", f"no Domain-0 with id 0 in 'xl list': {domains}")
    expected = dom0_memory_mib(host.xen_info.get("xen_commandline", ""))
    if expected is not None and abs(dom0.mem - expected) > DOM0_MEMORY_TOLERANCE_MIB:
        raise _fail("dom0", f"Domain-0 has {dom0.mem} MiB, the Xen command line gives it {expected} MiB "
                            f"({host.xen_info.get('xen_commandline')})")
    return f"Domain-0 {dom0.mem} MiB" + ("" if expected is None else f" (dom0_mem {expected} MiB)")


def check_bridge(host: HostRun) -> str:
    """dom0's bridge has an uplink port and an IPv4 address (DHCP, waited for)."""
    if not host.options.network:
        raise StepSkipped("the caller does not check the network (no network on this target)")
    bridge = shlex.quote(host.options.bridge)
    ports = host.console.run(f"ls /sys/class/net/{bridge}/brif", timeout=host.options.command_timeout)
    uplinks = [p for p in ports.output.split() if not p.startswith("vif")]
    if ports.status != 0 or not uplinks:
        raise _fail("bridge", f"{host.options.bridge} has no uplink port (eth0/en*): {ports.output.strip()}")
    listing = f"ip -4 -o addr show dev {bridge} 2>/dev/null || ip addr show dev {bridge}"
    found = _poll(lambda: ipv4_addresses(host.console.run(listing, timeout=host.options.command_timeout).output),
                  host.options.dhcp_timeout)
    if not found:
        raise _fail("bridge", f"{host.options.bridge} got no IPv4 address within {host.options.dhcp_timeout:.0f}s")
    host.bridge_address = found[0]
    return f"{host.options.bridge} {found[0][0]}/{found[0][1]}, ports {' '.join(ports.output.split())}"


def check_configs(host: HostRun) -> str:
    """The guest configs to check exist (the given ones, or some matching the glob)."""
    if host.options.guests:
        host.configs = list(host.options.guests)
        return f"{len(host.configs)} given"
    found = host.console.run(f"ls -1 {host.options.config_glob} 2>/dev/null", timeout=host.options.command_timeout)
    host.configs = [line.strip() for line in found.output.splitlines() if line.strip().endswith(".cfg")]
    if not host.configs:
        raise _fail("guest configs", f"nothing matches {host.options.config_glob} in dom0: bundle a guest "
                                     "(docs/bundling.md) or name the configs to check")
    return ", ".join(host.configs)


def check_autostart(host: HostRun) -> str:
    """Every config linked from the autostart folder names a domain that runs since boot, without ``xl create``."""
    folder = shlex.quote(host.options.autostart_dir.rstrip("/"))
    configs = " ".join(shlex.quote(c) for c in host.configs)
    links, resolved, listing, xendomains = run_parts(host.console, [
        f'for l in {folder}/*; do [ -e "$l" ] || [ -L "$l" ] && readlink -f "$l"; done; true',
        f"for c in {configs}; do readlink -f \"$c\"; done" if configs else "true",
        "xl list",
        "if [ -d /run/systemd/system ]; then systemctl is-active xendomains; else echo no-systemd; fi; true"],
        host.options.command_timeout)
    host.resolved = dict(zip(host.configs, resolved.split()))
    targets = [t for t in links.split() if t]
    if not targets:
        raise StepSkipped(f"nothing is linked from {host.options.autostart_dir}")
    domains = {d.name: d for d in parse_xl_list(listing)}
    problems, found = [], []
    if xendomains.strip() not in ("active", "no-systemd"):
        problems.append(f"systemd's xendomains.service is {xendomains.strip() or 'unknown'}, not active")
    for target in targets:
        text = host.console.run(f"cat {shlex.quote(target)}", timeout=host.options.command_timeout)
        if text.status != 0:
            problems.append(f"{target} (linked from {host.options.autostart_dir}) cannot be read: a dangling link")
            continue
        name = GuestConfig.from_text(text.output, target).name
        domain = domains.get(name)
        # "------" is runnable (waiting for a CPU): started, like running or blocked
        if domain is None or domain.in_state("pcd"):
            problems.append(f"{name} ({target}) is {domain.state if domain else 'not running'} after boot")
            continue
        host.autostarted[target] = name
        host.alive.add(name)
        found.append(f"{name} (domain {domain.id}, {domain.state})")
    if problems:
        raise _fail("autostart", "; ".join(problems) + _xendomains_log(host))
    return "running since boot: " + ", ".join(found)


def _xendomains_log(host: HostRun, lines: int = 12) -> str:
    """What xendomains said at boot (its journal's last lines, each cut to 200 characters)."""
    result = host.console.run(f"journalctl -u xendomains -b --no-pager -o cat 2>&1 | tail -n {lines} "
                              "| cut -c1-200", timeout=host.options.command_timeout)
    text = result.output.strip() if result.status == 0 else ""
    if not text:
        return ": see 'systemctl status xendomains' in dom0"
    return "; xendomains' journal (last lines):\n" + text


#: Xen's console switching: three Ctrl-a move the serial input to the next domain (then Xen, then dom0).
XEN_CONSOLE_SWITCH = "\x01\x01\x01"


def _send_slowly(console: ConsoleChannel, text: str, chunk: int = 8) -> None:
    """Send in small pieces: the virtual UART's receive FIFO (32 bytes) drops what overflows it."""
    for start in range(0, len(text), chunk):
        console.send_raw(text[start:start + chunk])
        time.sleep(0.3)


def _dom0less_console(host: HostRun, domid: int, name: str) -> str:
    """The domain's /proc/cmdline, read on its virtual UART through Xen's console switching.

    Xen prefixes the domain's lines with ``(XEN)`` and passes input through a small FIFO, so the
    dialogue is a plain login and one command matched by patterns, not the shell helpers.
    """
    console, limit = host.console, host.options.command_timeout
    console.send_raw(XEN_CONSOLE_SWITCH)
    console.expect(rf"Serial input to DOM{domid}\b", timeout=limit)
    try:
        console.send_raw("\n")
        console.expect(r"login: ", timeout=limit)  # it has been running since Xen started
        time.sleep(0.5)
        console.send_raw(f"{host.options.user}\n")
        if host.options.password is not None:
            console.expect(r"Password: ", timeout=limit)
            console.send_raw(f"{host.options.password}\n")
        console.expect(r"# ", timeout=limit)
        time.sleep(0.5)
        _send_slowly(console, "echo CMDLINE:$(cat /proc/cmdline):END\n")
        # the echo of the command has "CMDLINE:$(", the output the value; Xen may cut a line with "(XEN) "
        found = console.expect(r"CMDLINE:(?!\$\()([^\r\n]*?):END", timeout=limit)
        return found.group(1).replace("(XEN) ", "").strip()
    finally:
        # DOM<n> -> ... -> Xen -> dom0: one switch per further domain, one to Xen, one to dom0
        for _ in range(len(host.options.dom0less) - domid + 2):
            console.send_raw(XEN_CONSOLE_SWITCH)
            time.sleep(0.5)
        console.expect(r"Serial input to DOM0\b", timeout=limit)
        console.resync(timeout=limit)


def check_dom0less(host: HostRun) -> str:
    """Each dom0less domain runs since boot, answers on its console with its command line, and xl destroys it."""
    if not host.options.dom0less:
        raise StepSkipped("the target has no dom0less domain (QB_XEN_DOM0LESS is empty)")
    done = []
    for domid, (name, bootargs) in enumerate(host.options.dom0less, start=1):
        listed = {d.name: d for d in host.xl.list()}
        domain = listed.get(f"dom0less-{domid}")
        if domain is None or domain.id != domid:
            raise _fail("dom0less", f"'{name}' is not listed as dom0less-{domid} (ID {domid}) before any xl "
                                    f"create: {sorted(listed)}; is xen-init-dom0less.service enabled in dom0?")
        if any(flag in domain.state for flag in "pcd"):
            raise _fail("dom0less", f"dom0less-{domid} ('{name}') is in state {domain.state}")
        cmdline = _dom0less_console(host, domid, name)
        if cmdline != bootargs.strip():
            raise _fail("dom0less", f"'{name}' runs with {cmdline!r}, its device tree node gives {bootargs!r}")
        host.xl.destroy(f"dom0less-{domid}", timeout=host.options.xl_timeout, domain=domain)
        done.append(f"{name} (dom0less-{domid}): {cmdline!r}, destroyed, its memory back")
    host.free_now = None
    return "; ".join(done)


def _poll(probe: Callable[[], list[tuple[str, int]]], timeout: float) -> list[tuple[str, int]]:
    """Call ``probe`` until it returns something or ``timeout`` passes (backing off from 0.2 s)."""
    end = time.monotonic() + timeout
    for pause in backoff(first=0.2):
        found = probe()
        if found or time.monotonic() + pause > end:
            return found
        time.sleep(pause)
    return []  # pragma: no cover (backoff never ends)


# ---------------------------------------------------------------------- guest steps

def check_config(run: GuestRun) -> str:
    """The config reads and parses (xl's grammar); it names the guest, which does not exist yet."""
    text, listing = run_parts(run.host.console, [f"cat {shlex.quote(run.config_path)}", "xl list"],
                              run.options.command_timeout)
    run.config = GuestConfig.from_text(text, run.config_path)
    exists = any(d.name == run.config.name for d in parse_xl_list(listing))
    if exists and not run.autostarted:
        raise _fail("config", f"domain {run.config.name} already exists; destroy it first")
    if run.autostarted and not exists:
        raise _fail("config", f"{run.config.path} is linked from {run.options.autostart_dir}, and no domain "
                              f"{run.config.name} runs")
    started = ", started at boot" if run.autostarted else ""
    return f"{run.config.name}: {run.config.memory_mib} MiB, disk {run.config.disk_target or 'none'}{started}"


def check_files(run: GuestRun) -> str:
    """Every file the config names (kernel, ramdisk, device tree, disk images) exists in dom0."""
    config = run.need_config()
    if not config.files:
        raise StepSkipped(f"{config.path} names no file")
    quoted = " ".join(shlex.quote(f) for f in config.files)
    missing = run.host.console.run(f'for f in {quoted}; do [ -f "$f" ] || echo "$f"; done',
                                   timeout=run.options.command_timeout).output.split()
    if missing:
        raise _fail("files", "; ".join(f"{config.path} refers to {f}, which is not in dom0" for f in missing))
    return f"{len(config.files)} files present"


def check_create(run: GuestRun) -> str:
    """``xl create -p`` exits 0; the domain is listed, paused; Xen's free memory dropped by its memory."""
    config = run.need_config()
    if run.autostarted:
        run.domain = run.host.xl.find(config.name)
        raise StepSkipped(f"started at boot from {run.options.autostart_dir} (step 'autostart')")
    before = run.host.free_memory()
    run.host.free_now = None
    run.host.alive.add(config.name)  # from now on a failure destroys what may have been created
    # Paused: the device hotplug scripts of the next guest's create then do not compete with the
    # boot of this one (under TCG they can exceed libxl's hotplug timeout when they do).
    _, listing, info = run_parts(run.host.console, [f"xl create -p {shlex.quote(config.path)}", "xl list",
                                                    "xl info"], run.options.xl_timeout)
    run.domain = next((d for d in parse_xl_list(listing) if d.name == config.name), None)
    if run.domain is None or run.domain.in_state("cd"):
        raise _fail("create", f"after 'xl create', {config.name} is "
                              f"{run.domain.state if run.domain else 'not listed'}")
    after = run.host.free_now = free_memory_of(parse_xl_info(info))
    if before - after < config.memory_mib:
        raise _fail("create", f"creating {config.name} (memory = {config.memory_mib}) took only {before - after} "
                              f"MiB from Xen ({before} -> {after} MiB free)")
    return f"domain {run.domain.id}, free memory {before} -> {after} MiB"


def check_unpause(run: GuestRun) -> str:
    """``xl unpause`` exits 0; the domain is no longer paused, nor crashed or dying."""
    config = run.need_config()
    if run.autostarted:
        raise StepSkipped("running since boot")
    _, listing = run_parts(run.host.console, [f"xl unpause {shlex.quote(config.name)}", "xl list"],
                           run.options.xl_timeout)
    run.domain = next((d for d in parse_xl_list(listing) if d.name == config.name), None)
    # "------" is fine: runnable, waiting for a CPU
    if run.domain is None or run.domain.in_state("pcd"):
        raise _fail("unpause", f"after 'xl unpause', {config.name} is "
                               f"{run.domain.state if run.domain else 'not listed'}")
    return f"state {run.domain.state}"


def check_console(run: GuestRun) -> str:
    """``xl console`` reaches the guest's own shell (logged in; not dom0's shell)."""
    config = run.need_config()
    run.shell = run.host.xl.attach(f"xl console {shlex.quote(config.name)}", config.name, user=run.options.user,
                                   password=run.options.password, boot_timeout=run.options.guest_boot_timeout)
    return "guest shell answers"


def check_cmdline(run: GuestRun) -> str:
    """``/proc/cmdline`` equals what the config asks for, as xl builds it (cmdline, or root= + extra)."""
    config = run.need_config()
    cmdline = run.run("cat /proc/cmdline").strip()
    if cmdline != config.cmdline.strip():
        raise _fail("cmdline", f"the guest runs with {cmdline!r}, {config.path} asks for {config.cmdline!r}")
    return cmdline


def check_root_device(run: GuestRun) -> str:
    """``/`` is the device named by ``root=``, which is the first disk's vdev; the disk holds the expected guest."""
    config = run.need_config()
    if not config.disk_device:
        raise StepSkipped(f"{config.path} has no disk")
    if config.root_device != config.disk_device:
        raise _fail("root device", f"root={config.root_device or '(none)'} on the command line, but the config's "
                                   f"first disk is {config.disk_device} ({config.disk_target})")
    device = config.root_device.removeprefix("/dev/")
    st_dev, numbers, hostname = run_parts(run.need_shell(), [
        "stat -c %d /", f"cat /sys/class/block/{shlex.quote(device)}/dev",
        "cat /etc/hostname 2>/dev/null || true"], run.options.command_timeout)
    major, _, minor = numbers.strip().partition(":")
    if not (st_dev.strip().isdigit() and major.isdigit() and minor.isdigit()
            and int(st_dev) == os.makedev(int(major), int(minor))):
        raise _fail("root device", f"/ is not mounted from {config.root_device} (device {numbers.strip()}, "
                                   f"st_dev of / {st_dev.strip()})")
    expected = run.options.expected_hostname(config.name) if run.options.expected_hostname else None
    if expected is not None and hostname.strip() != expected:
        raise _fail("root device", f"the root disk ({config.disk_target}) holds guest {hostname.strip()!r}, "
                                   f"expected {expected!r}")
    checked = f", /etc/hostname {hostname.strip()}" if expected is not None else \
        " (hostname not checked: no expected hostname given)"
    return f"/ on {config.root_device} ({numbers.strip()}){checked}"


def _guest_network_skip(run: GuestRun) -> None:
    config = run.need_config()
    if not run.options.network:
        raise StepSkipped("the caller does not check the network")
    if not config.vif_bridges:
        raise StepSkipped(f"{config.path} has no vif")
    if run.host.bridge_address is None:
        raise StepSkipped("dom0's bridge address is unknown")


def check_network(run: GuestRun) -> str:
    """The guest has an IPv4 address (DHCP, waited for) on the subnet of dom0's bridge."""
    _guest_network_skip(run)
    assert run.host.bridge_address is not None
    bridge_ip, prefix = run.host.bridge_address

    def on_subnet() -> list[tuple[str, int]]:
        out = run.run("ip -4 -o addr show 2>/dev/null || ip addr show")
        return [(ip, p) for ip, p in ipv4_addresses(out) if not ip.startswith("127.") and same_subnet(ip, bridge_ip, prefix)]

    found = _poll(on_subnet, run.options.dhcp_timeout)
    if not found:
        shown = run.run("ip -4 -o addr show 2>/dev/null || ip addr show").strip()
        raise _fail("network", f"no address on {bridge_ip}/{prefix} (dom0's {run.options.bridge}) within "
                               f"{run.options.dhcp_timeout:.0f}s:\n{shown[-1500:]}")
    return f"{found[0][0]} on {bridge_ip}/{prefix}"


def _fetch(http: HttpSource, label: str, run: Callable[[str], str], step: str) -> str:
    """Fetch a file published for ``label`` with ``run`` (a shell); its SHA-256 matches; the server saw it."""
    item = http.publish(label)
    # (Debian busybox 1.35's wget crashes with -T: the console command's timeout bounds it instead)
    output = run(f"wget -q -O - {shlex.quote(item.url)} | sha256sum").strip()
    got = output.split()[0] if output else ""
    served = any(path == item.path for _, path in http.requests())
    if got != item.sha256 or not served:
        raise _fail(step, f"wget {item.url}: sha256 {got or output!r}, expected {item.sha256}; "
                          f"the server {'saw' if served else 'did not see'} the request")
    return f"{item.url} sha256 {got[:16]}..."


def check_dom0_http(host: HostRun) -> str:
    """dom0 fetches a file of random content from the caller's server through its bridge; its SHA-256 matches."""
    if not host.options.network:
        raise StepSkipped("the caller does not check the network (no network on this target)")
    if host.options.http is None:
        raise StepSkipped("no HTTP server given")
    return _fetch(host.options.http, "dom0",
                  lambda command: host.console.run(command, timeout=host.options.command_timeout).output, "http")


def check_http(run: GuestRun) -> str:
    """The guest fetches a file of random content from the caller's server; its SHA-256 matches; the server saw it."""
    _guest_network_skip(run)
    if run.options.http is None:
        raise StepSkipped("no HTTP server given")
    return _fetch(run.options.http, run.need_config().name, run.run, "http")


def check_detach(run: GuestRun) -> str:
    """Ctrl-] leaves the guest console and dom0's shell answers again."""
    shell, run.shell = run.need_shell(), None
    run.host.xl.detach(shell)
    return "back in dom0"


def check_state(run: GuestRun) -> str:
    """``xl list`` shows the guest running or blocked (not crashed or dying), each vif a port of its bridge."""
    config = run.need_config()
    bridges = sorted(set(config.vif_bridges))
    commands = ["xl list"] + [f"ls /sys/class/net/{shlex.quote(b)}/brif" for b in bridges]
    end = time.monotonic() + run.options.command_timeout
    for pause in backoff():
        listing, *ports = run_parts(run.host.console, commands, run.options.command_timeout)
        domain = next((d for d in parse_xl_list(listing) if d.name == config.name), None)
        # "------" (runnable, waiting for a CPU) passes over; anything else is final
        if domain is None or domain.in_state("rbpcd") or time.monotonic() + pause > end:
            break
        time.sleep(pause)
    if domain is None or not domain.in_state("rb") or domain.in_state("cd"):
        raise _fail("state", f"{config.name} is {domain.state if domain else 'not listed'}")
    run.domain = domain
    port_of = dict(zip(bridges, (p.split() for p in ports)))
    missing = [f"vif{domain.id}.{i} not on {b} (ports: {' '.join(port_of[b])})"
               for i, b in enumerate(config.vif_bridges) if f"vif{domain.id}.{i}" not in port_of[b]]
    if missing:
        raise _fail("state", "; ".join(missing))
    return f"{domain.state}" + "".join(f", vif{domain.id}.{i} on {b}" for i, b in enumerate(config.vif_bridges))


def check_destroy(run: GuestRun) -> str:
    """``xl destroy`` exits 0."""
    config = run.need_config()
    if run.kept_running:
        run.host.kept.append(config)
        raise StepSkipped("left running: the 'poweroff' step checks that dom0's poweroff shuts it down")
    # the listing and free memory right after it are read in the same round trip for the next steps
    info, _, run.listing_after_destroy, run.info_after_destroy = run_parts(
        run.host.console, ["xl info", f"xl destroy {shlex.quote(config.name)}", "xl list", "xl info"],
        run.options.xl_timeout)
    run.free_before_destroy = free_memory_of(parse_xl_info(info))
    run.host.free_now = None
    return f"free memory before: {run.free_before_destroy} MiB"


def check_gone(run: GuestRun) -> str:
    """The domain is no longer listed (polled, backing off from 0.1 s)."""
    name = run.need_config().name
    if run.kept_running:
        raise StepSkipped("left running for 'poweroff'")
    end = time.monotonic() + run.options.xl_timeout
    listing = run.listing_after_destroy or _list_and_info(run)
    pauses = backoff()
    while any(d.name == name for d in parse_xl_list(listing)):
        if time.monotonic() > end:
            raise _fail("gone", f"{name} still listed {run.options.xl_timeout:.0f}s after 'xl destroy'")
        time.sleep(next(pauses))
        listing = _list_and_info(run)
    run.host.alive.discard(name)
    return "not listed"


def _list_and_info(run: GuestRun) -> str:
    """``xl list`` (returned) and ``xl info`` (kept for the memory step) in one round trip."""
    listing, run.info_after_destroy = run_parts(run.host.console, ["xl list", "xl info"], run.options.xl_timeout)
    return listing


def check_memory(run: GuestRun) -> str:
    """Xen's free memory grows by the guest's memory (within the tolerance); with no guest of the run left, it is back to its value before the guests."""
    config, domain = run.need_config(), run.domain
    if run.kept_running:
        raise StepSkipped("left running for 'poweroff'")
    tolerance = run.options.memory_tolerance_mib
    if run.free_before_destroy is None or domain is None:
        raise _fail("memory back", "no free memory figure from before 'xl destroy'")
    wanted = run.free_before_destroy + domain.mem - tolerance
    baseline = run.host.free_baseline if not run.host.alive else None
    if baseline is not None:
        wanted = max(wanted, baseline - tolerance)
    info, end = run.info_after_destroy, time.monotonic() + run.options.memory_timeout
    pauses = backoff()
    while True:
        free = free_memory_of(parse_xl_info(info)) if info else run.host.xl.free_memory()
        if free >= wanted or time.monotonic() > end:
            break
        time.sleep(next(pauses))
        info = ""
    run.host.free_now = free
    if free < wanted:
        raise _fail("memory back", f"free memory {run.free_before_destroy} MiB before 'xl destroy' of {config.name} "
                                   f"({domain.mem} MiB), {free} MiB after; wanted at least {wanted} MiB"
                                   + (f" (all guests gone: back to {baseline} - {tolerance})" if baseline else ""))
    return f"{run.free_before_destroy} -> {free} MiB" + (f" (before the guests: {baseline})" if baseline else "")


# ---------------------------------------------------------------------- final host steps

def check_poweroff(host: HostRun) -> str:
    """``poweroff`` in dom0 shuts the running guests down cleanly and stops the machine, within the bound."""
    probe = host.options.poweroff
    if probe is None:
        raise StepSkipped("the caller does not power the host off")
    started = time.monotonic()
    host.console.start("poweroff")
    detail = probe(tuple(host.kept), host.options.poweroff_timeout)
    host.alive.difference_update(config.name for config in host.kept)
    return f"stopped {time.monotonic() - started:.1f}s after poweroff; {detail}"


HOST_STEPS: tuple[Step[HostRun], ...] = (
    Step("toolstack", "xl info answers with xen_version, xen_commandline, total/free memory, nr_cpus",
         check_toolstack),
    Step("dom0", "Domain-0 is listed with id 0 and the memory dom0_mem= gives it (within 2 MiB)", check_dom0),
    Step("bridge", "the bridge has an uplink port and an IPv4 address (DHCP)", check_bridge),
    Step("http", "dom0 fetches a file of random content over HTTP from the caller's server, right SHA-256",
         check_dom0_http),
    Step("guest configs", "there are guest configs to check", check_configs),
    Step("autostart", "every config linked from the autostart folder runs since boot, without xl create",
         check_autostart),
)
GUEST_STEPS: tuple[Step[GuestRun], ...] = (
    Step("config", "the config parses, names the guest, which does not exist yet", check_config, "prepare"),
    Step("create", "xl create -p exits 0, the domain is listed, Xen's free memory dropped by its memory",
         check_create, "start"),
    Step("unpause", "xl unpause exits 0; the domain is not paused, crashed or dying", check_unpause, "boot"),
    Step("console", "xl console reaches the guest's own shell", check_console),
    Step("cmdline", "/proc/cmdline equals the config's (cmdline, or root= + extra, as xl builds it)", check_cmdline),
    Step("root device", "/ is the root= device, which is the first disk's vdev; the disk holds the expected guest",
         check_root_device),
    Step("network", "an IPv4 address (DHCP) on the subnet of dom0's bridge", check_network),
    Step("http", "a file of random content fetched over HTTP from the caller's server has the right SHA-256",
         check_http),
    Step("detach", "Ctrl-] returns to dom0's shell", check_detach, boot_next=True),
    Step("state", "xl list shows it running or blocked, each vif a port of its bridge", check_state),
    Step("destroy", "xl destroy exits 0", check_destroy),
    Step("gone", "the domain is no longer listed", check_gone),
    Step("memory back", "Xen's free memory returns (within the tolerance)", check_memory),
)
#: After the guests, so that a dom0less problem does not keep the xl guests from being checked;
#: poweroff last.
FINAL_STEPS: tuple[Step[HostRun], ...] = (
    Step("dom0less", "each dom0less domain runs since boot (dom0less-<n>, ID n), its console (Xen's console "
         "switching) answers with the configured /proc/cmdline, xl destroy removes it", check_dom0less),
    Step("poweroff", "dom0's poweroff shuts the running guests down cleanly and the machine stops in time",
         check_poweroff),
)
#: Not in the default plan (a missing disk is for ``xl create`` to report there): the OEQA suite's
#: "bundled guests are installed" case runs it after "config".
FILES_STEP: Step[GuestRun] = Step("files", "every file the config names exists in dom0", check_files, "prepare")
DEFAULT_PLAN = LifecyclePlan(HOST_STEPS, GUEST_STEPS, FINAL_STEPS)


# ---------------------------------------------------------------------- the runner

#: Errors that make a step FAIL (anything else, such as KeyboardInterrupt, ends the run).
_STEP_ERRORS = (XenqemuError, ConsoleError, OSError, ValueError)


class _Recorder:
    def __init__(self, on_result: Callable[[StepResult], None] | None) -> None:
        self.results: list[StepResult] = []
        self.on_result = on_result
        #: set when the console closed (QEMU went away): nothing more can run
        self.closed = ""

    def add(self, result: StepResult) -> None:
        self.results.append(result)
        if self.on_result is not None:
            self.on_result(result)

    def run(self, subject: str | Callable[[], str], step: Step[C], context: C) -> bool:
        """Run one step; record PASS/SKIP/FAIL under ``subject`` (named after the step); True unless it failed."""
        if self.closed:
            self.add(StepResult(_name(subject), step.name, Outcome.NOT_RUN, 0.0, f"not run: {self.closed}", step.rule))
            return False
        started = time.monotonic()
        try:
            detail, outcome = step.check(context), Outcome.PASS
        except ConsoleClosed as err:
            detail, outcome = f"{type(err).__name__}: {err}", Outcome.FAIL
            self.closed = "the console closed"
        except StepSkipped as skip:
            detail, outcome = skip.reason, Outcome.SKIP
        except LifecycleFailure as failure:
            detail, outcome = failure.detail, Outcome.FAIL
        except _STEP_ERRORS as err:
            detail, outcome = f"{type(err).__name__}: {err}", Outcome.FAIL
        self.add(StepResult(_name(subject), step.name, outcome, time.monotonic() - started, detail, step.rule))
        return outcome is not Outcome.FAIL

    def not_run(self, subject: str, steps: Sequence[Step[C]], after: str) -> None:
        why = self.closed or f"'{after}' failed"
        for step in steps:
            self.add(StepResult(subject, step.name, Outcome.NOT_RUN, 0.0, f"not run: {why}", step.rule))


def _name(subject: str | Callable[[], str]) -> str:
    return subject if isinstance(subject, str) else subject()


def plan_batches(memories: Sequence[int], free_mib: int, concurrent: bool = True,
                 overhead_mib: int = GUEST_OVERHEAD_MIB) -> list[list[int]]:
    """Group guests (by index) into batches whose memory together fits into ``free_mib``.

    In order; a guest too big to share goes alone (``xl create`` then says whether it fits at all).
    Without ``concurrent`` every guest is its own batch.
    """
    batches: list[list[int]] = []
    used = 0
    for index, memory in enumerate(memories):
        need = memory + overhead_mib
        if concurrent and batches and used + need <= free_mib:
            batches[-1].append(index)
            used += need
        else:
            batches.append([index])
            used = need
    return batches


def run_lifecycle(console: ConsoleChannel, options: LifecycleOptions = LifecycleOptions(),
                  plan: LifecyclePlan = DEFAULT_PLAN, on_result: Callable[[StepResult], None] | None = None,
                  xl: Xl | None = None) -> LifecycleReport:
    """Run ``plan`` on the host behind ``console`` (dom0's shell, logged in); return every step's result.

    ``on_result`` is called as each result is recorded (progress lines).  Never raises for a
    failed check; a console that dies (QEMU gone) fails the step it happened in and the rest.
    """
    started = time.monotonic()
    host = HostRun(console, xl or Xl(console, timeout=options.xl_timeout,
                                     guest_boot_timeout=options.guest_boot_timeout), options)
    recorder = _Recorder(on_result)
    for index, step in enumerate(plan.host):
        if not recorder.run("dom0", step, host):
            recorder.not_run("dom0", plan.host[index + 1:], step.name)
            for config in host.configs:
                recorder.not_run(os.path.basename(config), plan.guest, step.name)
            recorder.not_run("dom0", plan.final, step.name)
            return LifecycleReport(recorder.results, time.monotonic() - started)
    _run_guests(host, plan.guest, recorder)
    for index, step in enumerate(plan.final):
        if not recorder.run("dom0", step, host):
            recorder.not_run("dom0", plan.final[index + 1:], step.name)
            break
    return LifecycleReport(recorder.results, time.monotonic() - started)


def _run_guests(host: HostRun, steps: Sequence[Step[GuestRun]], recorder: _Recorder) -> None:
    if not steps:
        return
    runs = [GuestRun(host, path) for path in host.configs]
    ready = [run for run in runs if _run_stage(run, steps, "prepare", recorder)]
    # a guest started at boot already holds its memory
    memories = [run.config.max_memory_mib if run.config and not run.autostarted else 0 for run in ready]
    free = host.free_memory() if ready else 0
    for batch in plan_batches(memories, free, host.options.concurrent):
        host.free_baseline = host.free_memory()
        _run_batch([ready[i] for i in batch], steps, recorder)


def _run_batch(members: Sequence[GuestRun], steps: Sequence[Step[GuestRun]], recorder: _Recorder) -> None:
    """Start every member, then check them one by one, each next one booting during the previous one's end."""
    started = [run for run in members if _run_stage(run, steps, "start", recorder)]
    booted = 0

    def boot_next() -> None:
        nonlocal booted
        while booted < len(started):
            booted += 1
            if _run_stage(started[booted - 1], steps, "boot", recorder):
                return

    for index, run in enumerate(started):
        if index >= booted:
            boot_next()
        if not run.failed:
            _run_stage(run, steps, "check", recorder, after=lambda step: boot_next() if step.boot_next else None)


def _run_stage(run: GuestRun, steps: Sequence[Step[GuestRun]], stage: str, recorder: _Recorder,
               after: Callable[[Step[GuestRun]], None] | None = None) -> bool:
    """Run the guest's steps of ``stage``; on a failure clean up and report the rest as not run.

    ``after(step)`` is called after each step that passed (or was skipped).
    """
    for index, step in enumerate(steps):
        if step.stage != stage:
            continue
        if not recorder.run(lambda: run.label, step, run):
            run.failed = True
            recorder.not_run(run.label, steps[index + 1:], step.name)
            if not recorder.closed:
                _clean_up(run)
            return False
        if after is not None:
            after(step)
    return True


def _clean_up(run: GuestRun) -> None:
    """After a failed step: leave the guest console, destroy the guest if it exists."""
    host = run.host
    if run.shell is not None:
        shell, run.shell = run.shell, None
        with suppress(*_STEP_ERRORS):
            host.xl.detach(shell)
    try:
        host.console.sync(timeout=30)
    except _STEP_ERRORS:
        with suppress(*_STEP_ERRORS):
            host.console.resync()
    if run.config is not None and run.config.name in host.alive:
        with suppress(*_STEP_ERRORS):
            if host.xl.find(run.config.name) is not None:
                host.xl.destroy(run.config.name, timeout=host.options.xl_timeout, check_memory=False)
        host.alive.discard(run.config.name)
    host.free_now = None


# ---------------------------------------------------------------------- the report

@dataclass(frozen=True)
class LifecycleReport:
    """Every step's result in the order they ran, and the wall time of the run."""

    results: list[StepResult]
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no step failed (skipped steps said why) and something was checked."""
        return bool(self.results) and all(r.outcome in (Outcome.PASS, Outcome.SKIP) for r in self.results)

    def failures(self) -> list[StepResult]:
        """The failed steps."""
        return [r for r in self.results if r.outcome is Outcome.FAIL]

    def subjects(self) -> list[str]:
        """dom0 and the guests, in order of appearance."""
        return list(dict.fromkeys(r.subject for r in self.results))

    def of(self, subject: str) -> list[StepResult]:
        """The results of one subject."""
        return [r for r in self.results if r.subject == subject]

    def failed_step(self, subject: str) -> StepResult | None:
        """The failed step of ``subject``, if any."""
        return next((r for r in self.of(subject) if r.outcome is Outcome.FAIL), None)

    def summary(self) -> str:
        """One line with the counts, then one line per failed step."""
        counts = {o: sum(1 for r in self.results if r.outcome is o) for o in Outcome}
        line = (f"{counts[Outcome.PASS]} passed, {counts[Outcome.FAIL]} failed, {counts[Outcome.SKIP]} skipped, "
                f"{counts[Outcome.NOT_RUN]} not run in {self.seconds:.1f}s"
                + (" - lifecycle OK" if self.ok else ""))
        return "\n".join([line] + [f"FAILED {r.subject}: {r.step} - {_first_line(r.detail)}"
                                   for r in self.failures()])

    def junit_xml(self, suite: str = "xenqemu.lifecycle", properties: dict[str, str] | None = None) -> str:
        """The report as JUnit XML: one test case per step and subject (GitLab/Jenkins/GitHub read it)."""
        return _junit(self, suite, properties or {})


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else ""


def _junit(report: LifecycleReport, suite_name: str, properties: dict[str, str]) -> str:
    failures = sum(1 for r in report.results if r.outcome is Outcome.FAIL)
    skipped = sum(1 for r in report.results if r.outcome in (Outcome.SKIP, Outcome.NOT_RUN))
    suites = ElementTree.Element("testsuites", name=suite_name, tests=str(len(report.results)),
                                 failures=str(failures), errors="0", skipped=str(skipped),
                                 time=f"{report.seconds:.3f}")
    suite = ElementTree.SubElement(suites, "testsuite", name=suite_name, tests=str(len(report.results)),
                                   failures=str(failures), errors="0", skipped=str(skipped),
                                   time=f"{report.seconds:.3f}", timestamp=time.strftime("%Y-%m-%dT%H:%M:%S"),
                                   hostname=socket.gethostname())
    if properties:
        props = ElementTree.SubElement(suite, "properties")
        for key, value in properties.items():
            ElementTree.SubElement(props, "property", name=key, value=_xml_text(value))
    for result in report.results:
        case = ElementTree.SubElement(suite, "testcase", name=result.step,
                                      classname=f"{suite_name}.{result.subject}", time=f"{result.seconds:.3f}")
        detail = _xml_text(result.detail)
        if result.outcome is Outcome.FAIL:
            failure = ElementTree.SubElement(case, "failure", message=_first_line(detail) or "failed",
                                             type="LifecycleFailure")
            failure.text = f"rule: {result.rule}\n{detail}"
        elif result.outcome in (Outcome.SKIP, Outcome.NOT_RUN):
            ElementTree.SubElement(case, "skipped", message=detail.strip()[:500] or result.outcome.value)
        elif detail:
            ElementTree.SubElement(case, "system-out").text = detail
    return ElementTree.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _xml_text(text: str) -> str:
    """``text`` without the characters XML 1.0 cannot carry (console output may hold any)."""
    return re.sub(r"[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]", "?", text)


# ---------------------------------------------------------------------- the HTTP server

class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    timeout = 30  # a stuck client cannot hold a handler thread for longer

    def do_GET(self) -> None:
        body = self.server.files.get(self.path)
        self.server.seen.append((self.client_address[0], self.path))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.seen: list[tuple[str, str]] = []


@final
class LoopbackHttpServer:
    """Serves files of random content on 127.0.0.1 only (ephemeral port), for guests behind slirp.

    QEMU's user network maps ``guest_host`` (10.0.2.2) to the host's loopback, so a guest
    reaches the server through xenbr0 and slirp, and nothing else can.  Only published paths
    are served (404 for anything else), each file is ``size`` bytes, and the server stops when
    the ``with`` block ends (or at :meth:`close`).
    """

    def __init__(self, guest_host: str = "10.0.2.2", size: int = 16384) -> None:
        self.guest_host = guest_host
        self.size = size
        self._server = _Server()
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="xenqemu-http", daemon=True)
        self._thread.start()

    def __enter__(self) -> LoopbackHttpServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def publish(self, label: str) -> Published:
        """A new file of ``size`` random bytes under a path starting with ``label`` (16 characters)."""
        body = os.urandom(self.size)
        # short: every byte typed into a guest console costs, and a short line is less exposed
        path = f"/{re.sub(r'[^A-Za-z0-9._-]', '_', label)[:16]}-{body[:3].hex()}"
        self._server.files[path] = body
        return Published(f"http://{self.guest_host}:{self.port}{path}", path, hashlib.sha256(body).hexdigest())

    def requests(self) -> list[tuple[str, str]]:
        """(client address, path) of every request so far."""
        return list(self._server.seen)

    def close(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def results_by_subject(results: Sequence[StepResult]) -> Iterator[tuple[str, list[StepResult]]]:
    """(subject, its results) in order of first appearance."""
    order = list(dict.fromkeys(r.subject for r in results))
    for subject in order:
        yield subject, [r for r in results if r.subject == subject]

