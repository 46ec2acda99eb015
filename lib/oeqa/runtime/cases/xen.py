#
# SPDX-License-Identifier: MIT
#
"""OEQA runtime suite ``xen``: Xen dom0 and the guests bundled into the host image.

Enable it for testimage with ``TEST_SUITES:append = " xen"`` (the module name is the suite
name) and boot the host with ``TEST_RUNQEMUPARAMS = "slirp"``; docs/testing-with-oe.md has the
full set of local.conf lines.

What it checks, all over the serial line (no ssh needed):

* dom0 is up: ``xl info`` answers and ``xl list`` shows Domain-0 with the memory the Xen command
  line gives it (``dom0_mem=``), and dom0's bridge ``xenbr0`` holds ``eth0`` and a DHCP address;
* every ``/etc/xen/xen-guest-bundle*.cfg`` refers to files that exist in dom0;
* each such guest is created with ``xl create -c``, reached on its console, checked (kernel
  command line = the config's ``extra``, ``/`` is the config's root device, ``eth0`` got an
  address by DHCP through ``xenbr0``), detached, listed, destroyed, and Xen's free memory returns
  to its value before the guest.

The serial line. On qemuarm64 oe-core's QemuRunner gets two tcpserial ports; the second one
(``runner.server_socket``, the socket ``run_serial`` uses) is the PL011, i.e. the Xen console
that dom0's ``hvc0`` getty is on, and the runner has logged in as root there. Rather than a second
implementation of a serial protocol, the cases drive that very socket with the layer's harness
(:class:`xenqemu.console.ConsoleChannel` over a ``pexpect.fdpexpect.fdspawn``). The runner's
LoggingThread also reads that socket whenever it is not busy; it only ever reads while holding
``runner.thread.serial_lock`` and stops polling the socket while someone else holds it (this is
how ``run_serial`` itself keeps the thread away). :func:`runner_serial_console` therefore holds
that lock for the whole console session, so exactly one reader sees each byte; what the channel
reads is appended to the runner's boot log (``<bootlog>.2``, the file the LoggingThread writes),
so the log stays complete. The session runs in a child shell of the login shell and leaves it
with ``exit``, so the login shell's prompt (``root@<host>:~#``, which ``run_serial`` waits for)
and working directory are untouched for other suites.

Why not ``run_serial``: it appends ``; echo $?`` and cuts the output at the first ``$?\\r\\n``, it
returns status 1 for success and 0 for failure, it needs the ``~#`` prompt (a ``cd`` breaks it),
and it cannot follow ``xl create -c`` into a guest console and back out with Ctrl-].

Importing the harness: xenqemu and xenbundle live in this layer's ``lib/``. The module appends
that directory to ``sys.path`` unless it is there already (layer.conf's ``addpylib`` adds it in
BitBake's server, but testimage's loader may run elsewhere, and ``oe-test`` and the scripts in
scripts/oe run outside BitBake); the directory is derived from this file's location
(``<layer>/lib/oeqa/runtime/cases/xen.py``). No ``__init__.py``
files: oe-core's ``oeqa`` is a namespace package that this layer's ``lib/oeqa`` joins.
"""

import os
import re
import sys
from contextlib import contextmanager

from oeqa.core.decorator.depends import OETestDepends
from oeqa.core.decorator.oetimeout import OETimeout
from oeqa.runtime.case import OERuntimeTestCase
from oeqa.runtime.decorator.package import OEHasPackage

LAYER_LIB = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
if LAYER_LIB not in sys.path:
    # Appended, not prepended: a copy of the layer that bitbake already put on the path wins.
    sys.path.append(LAYER_LIB)

import pexpect.fdpexpect
from xenbundle.disk import parse_disk
from xenbundle.xlcfg import parse as parse_xl_config
from xenqemu.console import ConsoleChannel, ConsoleClosed
from xenqemu.xl import Xl, parse_xl_info

#: Packages that provide ``xl`` in an OE image (meta-virtualization) or in the Debian-based
#: reference target; OEHasPackage is satisfied by any one of them.
XL_PACKAGES = ["xen-tools-xl", "xen-tools", "xen-utils-common"]

#: Where bundled guests' configs are installed, and how they are named.
BUNDLE_CONFIG_GLOB = "/etc/xen/xen-guest-bundle*.cfg"

# Timeouts sized for TCG on a busy 2-core machine (measured there: xl create -c to a guest shell
# 75-107 s, xl destroy 14-19 s, a detached xl create 35-40 s), with headroom.
COMMAND_TIMEOUT = 120
GUEST_BOOT_TIMEOUT = 600
GUEST_DHCP_TIMEOUT = 180
DOM0_DHCP_TIMEOUT = 120
MEMORY_RETURN_TIMEOUT = 180



def ipv4_of(interface=None):
    """Shell command listing an interface's (or all) addresses (busybox ``ip`` may lack ``-4 -o``)."""
    device = f" dev {interface}" if interface else ""
    return f"ip -4 -o addr show{device} 2>/dev/null || ip addr show{device}"


def ipv4_of_when_up(interface, seconds):
    """Like :func:`ipv4_of`, but first wait up to ``seconds`` for an IPv4 address to appear.

    DHCP runs in the background (systemd-networkd in the image), so a test that starts right
    after login may be there before the lease.
    """
    listing = ipv4_of(interface)
    return ("i=0; while [ $i -lt %d ] && ! { %s; } | grep -q 'inet '; do sleep 1; i=$((i + 1)); done; %s"
            % (seconds, listing, listing))


#: ``xl list`` rounds memory to MiB and Xen keeps a few pages of dom0's allocation for itself.
DOM0_MEMORY_TOLERANCE_MIB = 2

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}


def parse_size_mib(size):
    """Return a Xen command-line size (``384M``, ``1G``, ``524288K``, bytes without unit) in MiB."""
    match = re.fullmatch(r"\s*(\d+)\s*([bBkKmMgGtT]?)\s*", size)
    if not match:
        raise ValueError(f"not a Xen size: {size!r}")
    return int(match.group(1)) * _UNITS[match.group(2).lower()] // 1024 ** 2


def dom0_memory_mib(xen_commandline):
    """Return dom0's initial memory in MiB from a Xen command line, or None without ``dom0_mem``.

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


def ipv4_addresses(ip_o_addr_output):
    """Return ``[(address, prefix_len)]`` from ``ip -4 -o addr show`` output."""
    return [(addr, int(prefix)) for addr, prefix in
            re.findall(r"\binet (\d+\.\d+\.\d+\.\d+)/(\d+)", ip_o_addr_output)]


def same_subnet(address_a, address_b, prefix_len):
    """True when both dotted-quad addresses lie in the same ``/prefix_len`` network."""
    def as_int(address):
        value = 0
        for part in address.split("."):
            value = value * 256 + int(part)
        return value
    mask = (0xFFFFFFFF << (32 - prefix_len)) & 0xFFFFFFFF if prefix_len else 0
    return as_int(address_a) & mask == as_int(address_b) & mask


def kernel_root_device(cmdline):
    """Return the ``root=`` value of a kernel command line, or None."""
    match = re.search(r"(?:^|\s)root=(\S+)", cmdline)
    return match.group(1) if match else None


class RunnerLog:
    """File-like sink that appends what the console channel reads to the QemuRunner's log."""

    def __init__(self, runner):
        self.runner = runner

    def write(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8", "replace")
        if data:
            self.runner.log(data, extension=".2")

    def flush(self):
        pass


@contextmanager
def runner_serial_console(runner, timeout=COMMAND_TIMEOUT):
    """Yield a logged-in :class:`ConsoleChannel` on QemuRunner's serial socket.

    Holds ``runner.thread.serial_lock`` throughout (the LoggingThread does not read the socket
    while it is held), works on a ``dup`` of the socket's descriptor so closing the spawn never
    closes the runner's socket, runs the session in a child shell of the login shell and leaves
    it with ``exit``, then waits for the login shell's prompt (the pattern ``run_serial`` uses),
    so the runner finds its shell as it left it.
    """
    sock = getattr(runner, "server_socket", None)
    thread = getattr(runner, "thread", None)
    if sock is None or thread is None:
        raise RuntimeError("the QemuRunner has no logged-in serial console (did the target boot?)")

    def qemu_alive():
        if not runner.is_alive():
            raise ConsoleClosed("QEMU exited while the xen suite was using its serial console")

    with thread.serial_lock:
        fd = os.dup(sock.fileno())
        spawn = pexpect.fdpexpect.fdspawn(fd, timeout=timeout, encoding="utf-8", codec_errors="replace")
        spawn.logfile_read = RunnerLog(runner)
        try:
            channel = ConsoleChannel(spawn, name="dom0", liveness=qemu_alive, default_timeout=timeout)
            channel.send_line("sh")
            channel.login(timeout=timeout)
            try:
                yield channel
            except BaseException:
                channel.resync()  # a failed check may have left a command running
                raise
            finally:
                channel.send_line("exit")
                channel.expect(runner.boot_patterns["search_cmd_finished"], timeout=timeout)
        finally:
            spawn.close()


class XenTest(OERuntimeTestCase):
    """Xen dom0 and bundled guests, driven over the Xen console of a QEMU target."""

    @classmethod
    def setUpClass(cls):
        runner = getattr(cls.tc.target, "runner", None)
        if runner is None:
            raise AssertionError(
                "suite 'xen' drives the Xen serial console through oe-core's QemuRunner; "
                f"run it with TEST_TARGET = \"qemu\" (target here: {type(cls.tc.target).__name__})")
        cls.runner = runner

    def xl_info(self, shell):
        status, output = shell.run("xl info", timeout=COMMAND_TIMEOUT)
        self.assertEqual(status, 0, f"xl info failed:\n{output}")
        return parse_xl_info(output)

    def xl(self, shell):
        return Xl(shell, timeout=COMMAND_TIMEOUT, guest_boot_timeout=GUEST_BOOT_TIMEOUT)

    def bundled_configs(self, shell):
        status, output = shell.run(f"ls -1 {BUNDLE_CONFIG_GLOB}", timeout=COMMAND_TIMEOUT)
        configs = [line.strip() for line in output.splitlines() if line.strip().endswith(".cfg")]
        self.assertTrue(status == 0 and configs,
                        f"no bundled guest in the image: nothing matches {BUNDLE_CONFIG_GLOB} (bundling put no guest "
                        f"into the host rootfs; see docs/bundling.md)\n{output}")
        return configs

    def read_config(self, shell, path):
        status, text = shell.run(f"cat {path}", timeout=COMMAND_TIMEOUT)
        self.assertEqual(status, 0, f"cannot read {path}:\n{text}")
        return parse_xl_config(text + "\n", filename=path)

    @OEHasPackage(XL_PACKAGES)
    @OETimeout(600)
    def test_dom0_is_up(self):
        with runner_serial_console(self.runner) as shell:
            info = self.xl_info(shell)
            for key in ("xen_version", "xen_commandline", "total_memory", "free_memory", "nr_cpus"):
                self.assertIn(key, info, f"xl info lacks {key}")
            domains = {d.name: d for d in self.xl(shell).list()}
        self.assertIn("Domain-0", domains, f"xl list shows no Domain-0: {sorted(domains)}")
        dom0 = domains["Domain-0"]
        self.assertEqual(dom0.id, 0)
        expected = dom0_memory_mib(info["xen_commandline"])
        self.assertIsNotNone(expected, "the Xen command line sets no dom0_mem: {}".format(info["xen_commandline"]))
        self.assertLessEqual(abs(dom0.mem - expected), DOM0_MEMORY_TOLERANCE_MIB,
                             "Domain-0 has %d MiB, the Xen command line gives it %d MiB (%s)"
                             % (dom0.mem, expected, info["xen_commandline"]))

    @OETestDepends(["xen.XenTest.test_dom0_is_up"])
    @OETimeout(300)
    def test_dom0_bridge_has_dhcp_address(self):
        with runner_serial_console(self.runner) as shell:
            status, members = shell.run("ls /sys/class/net/xenbr0/brif", timeout=COMMAND_TIMEOUT)
            self.assertEqual(status, 0, f"dom0 has no bridge xenbr0:\n{members}")
            uplinks = [port for port in members.split() if not port.startswith("vif")]
            self.assertTrue(uplinks, f"xenbr0 has no uplink port (eth0/en*): {members}")
            status, output = shell.run(ipv4_of_when_up("xenbr0", DOM0_DHCP_TIMEOUT),
                                       timeout=COMMAND_TIMEOUT + DOM0_DHCP_TIMEOUT)
        self.assertTrue(ipv4_addresses(output), "xenbr0 got no IPv4 address by DHCP within %d s:\n%s"
                        % (DOM0_DHCP_TIMEOUT, output))

    @OETestDepends(["xen.XenTest.test_dom0_is_up"])
    @OETimeout(300)
    def test_bundled_guests_are_installed(self):
        with runner_serial_console(self.runner) as shell:
            for path in self.bundled_configs(shell):
                config = self.read_config(shell, path)
                settings = config.settings()
                files = [settings.get("kernel")] + [settings.get(k) for k in ("ramdisk", "device_tree")]
                disks = settings.get("disk") or []
                files += [parse_disk(spec).target for spec in disks]
                for file in [f for f in files if f]:
                    with self.subTest(config=path, file=file):
                        status, output = shell.run(f"test -f {file}", timeout=COMMAND_TIMEOUT)
                        self.assertEqual(status, 0, f"{path} refers to {file}, which is not in dom0")

    @OETestDepends(["xen.XenTest.test_bundled_guests_are_installed",
                    "xen.XenTest.test_dom0_bridge_has_dhcp_address"])
    @OETimeout(3600)
    def test_bundled_guest_lifecycle(self):
        with runner_serial_console(self.runner) as shell:
            xl = self.xl(shell)
            status, output = shell.run(ipv4_of("xenbr0"), timeout=COMMAND_TIMEOUT)
            bridge_addresses = ipv4_addresses(output)
            self.assertTrue(bridge_addresses, f"xenbr0 has no IPv4 address:\n{output}")
            for path in self.bundled_configs(shell):
                with self.subTest(config=path):
                    self.check_guest_lifecycle(shell, xl, path, bridge_addresses[0])

    def check_guest_lifecycle(self, shell, xl, path, bridge_address):
        settings = self.read_config(shell, path).settings()
        name = settings["name"]
        extra = settings.get("extra", "")
        memory = int(settings.get("memory", 0))
        self.assertNotIn(name, [d.name for d in xl.list()], f"{name} is already running")
        free_before = int(self.xl_info(shell)["free_memory"])

        with xl.create(path, console=True, boot_timeout=GUEST_BOOT_TIMEOUT) as guest:
            status, cmdline = guest.run("cat /proc/cmdline", timeout=COMMAND_TIMEOUT)
            self.assertEqual(status, 0, cmdline)
            self.assertIn(" ".join(extra.split()), " ".join(cmdline.split()),
                          f"{path}: the guest kernel command line is not the config's extra")
            root = kernel_root_device(cmdline)
            self.assertIsNotNone(root, f"{path}: no root= on the guest command line: {cmdline}")
            self.check_root_device(guest, path, root)
            self.check_guest_dhcp(guest, path, bridge_address)

        running = {d.name: d for d in xl.list()}
        self.assertIn(name, running, f"{path} is not listed after detaching from its console")
        self.assertTrue(running[name].in_state("rb") and not running[name].in_state("cd"),
                        f"{name} is in state {running[name].state}")
        if memory:
            free_running = int(self.xl_info(shell)["free_memory"])
            self.assertGreaterEqual(free_before - free_running, memory,
                                    "starting %s (memory = %d) took only %d MiB from Xen"
                                    % (name, memory, free_before - free_running))

        xl.destroy(name, check_memory=False)
        self.assertNotIn(name, [d.name for d in xl.list()], f"{name} is still listed after xl destroy")
        free_after = self.wait_for_free_memory(shell, free_before)
        self.assertGreaterEqual(free_after, free_before,
                                "Xen's free memory did not return after destroying %s: %d MiB before "
                                "xl create, %d MiB after xl destroy" % (name, free_before, free_after))

    def check_root_device(self, guest, path, root):
        device = root.removeprefix("/dev/")
        status, numbers = guest.run(f"cat /sys/class/block/{device}/dev", timeout=COMMAND_TIMEOUT)
        self.assertEqual(status, 0, f"{path}: the guest has no block device {root}:\n{numbers}")
        major, minor = (int(n) for n in numbers.strip().split(":"))
        status, st_dev = guest.run("stat -c %d /", timeout=COMMAND_TIMEOUT)
        self.assertEqual(status, 0, st_dev)
        self.assertEqual(int(st_dev.strip()), os.makedev(major, minor),
                         f"{path}: / is not mounted from {root} ({numbers.strip()})")

    def check_guest_dhcp(self, guest, path, bridge_address):
        # The guest's interface name depends on its distro (eth0 for netfront on both images here),
        # so look at every interface and leave out loopback.
        command = ("i=0; while [ $i -lt %d ]; do (%s) | grep ' inet ' | grep -qv ' 127\\.' && break; "
                   "sleep 2; i=$((i+2)); done; %s" % (GUEST_DHCP_TIMEOUT, ipv4_of(), ipv4_of()))
        status, output = guest.run(command, timeout=GUEST_DHCP_TIMEOUT + COMMAND_TIMEOUT)
        addresses = [(ip, prefix) for ip, prefix in ipv4_addresses(output) if not ip.startswith("127.")]
        self.assertTrue(addresses, f"{path}: the guest got no address by DHCP:\n{output}")
        bridge_ip, prefix = bridge_address
        self.assertTrue(any(same_subnet(ip, bridge_ip, prefix) for ip, _ in addresses),
                        "%s: guest address %s is not on xenbr0's network %s/%d"
                        % (path, addresses, bridge_ip, prefix))

    def wait_for_free_memory(self, shell, expected):
        """Poll ``xl info`` until free_memory is back to ``expected``; Xen frees pages lazily."""
        command = ("i=0; while [ $i -lt %d ]; do [ \"$(xl info | sed -n 's/^free_memory *: *//p')\" "
                   "-ge %d ] && break; sleep 2; i=$((i+2)); done" % (MEMORY_RETURN_TIMEOUT, expected))
        shell.run(command, timeout=MEMORY_RETURN_TIMEOUT + COMMAND_TIMEOUT)
        return int(self.xl_info(shell)["free_memory"])
