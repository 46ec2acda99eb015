#
# SPDX-License-Identifier: MIT
#
"""OEQA runtime suite ``xen``: Xen dom0 and the guests bundled into the host image.

Enable it for testimage with ``TEST_SUITES:append = " xen"`` (the module name is the suite
name) and boot the host with ``TEST_RUNQEMUPARAMS = "slirp"``; docs/testing-with-oe.md has the
full set of local.conf lines.

The checks are the harness's one lifecycle check, :mod:`xenqemu.lifecycle` (the same steps and
pass rules ``xenqemu lifecycle`` and the end-to-end tests run), over this suite's console
adapter; each case runs some of its steps:

* ``test_dom0_is_up``: ``xl info`` answers; Domain-0 has the memory ``dom0_mem=`` gives it;
* ``test_dom0_bridge_has_dhcp_address``: ``xenbr0`` holds an uplink port and a DHCP address;
* ``test_bundled_guests_are_installed``: every ``/etc/xen/xen-guest-bundle*.cfg`` parses and
  refers to files that exist in dom0;
* ``test_bundled_guest_lifecycle``: every such guest is created, booted, reached on its console,
  checked (kernel command line as xl builds it, ``/`` on the config's root device, an address on
  ``xenbr0``'s subnet, an HTTP fetch of random content from a server on the build host's
  loopback checked by SHA-256 when the target uses slirp), detached, listed, destroyed, and
  Xen's free memory returns.  Guests that fit into Xen's free memory boot together.

The serial line. On qemuarm64 oe-core's QemuRunner logs in on its serial socket
(``runner.server_socket``, the socket ``run_serial`` uses), which is the PL011, i.e. the Xen
console that dom0's ``hvc0`` getty is on.  Rather than a second implementation of a serial
protocol, the cases drive that very socket with the layer's harness
(:class:`xenqemu.console.ConsoleChannel` over a ``pexpect.fdpexpect.fdspawn``).  The runner's
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
it reads in 1 KiB pieces with a 0.1 s pause before each, and it cannot follow ``xl console``
into a guest console and back out with Ctrl-].

Importing the harness: xenqemu and xenbundle live in this layer's ``lib/``. The module appends
that directory to ``sys.path`` unless it is there already (layer.conf's ``addpylib`` adds it in
BitBake's server, but testimage's loader may run elsewhere, and ``oe-test`` and the scripts in
scripts/oe run outside BitBake); the directory is derived from this file's location
(``<layer>/lib/oeqa/runtime/cases/xen.py``). No ``__init__.py``
files: oe-core's ``oeqa`` is a namespace package that this layer's ``lib/oeqa`` joins.
"""

import os
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
from xenqemu.console import ConsoleChannel, ConsoleClosed
from xenqemu.lifecycle import (
    FILES_STEP,
    GUEST_STEPS,
    HOST_STEPS,
    LifecycleOptions,
    LifecyclePlan,
    LoopbackHttpServer,
    Outcome,
    run_lifecycle,
)

#: Packages that provide ``xl`` in an OE image (meta-virtualization) or in the Debian-based
#: reference target; OEHasPackage is satisfied by any one of them.
XL_PACKAGES = ["xen-tools-xl", "xen-tools", "xen-utils-common"]

#: Where bundled guests' configs are installed, and how they are named.
BUNDLE_CONFIG_GLOB = "/etc/xen/xen-guest-bundle*.cfg"

# Timeouts sized for TCG on a busy 2-core machine (measured there: xl create -c to a guest shell
# 75-107 s, xl destroy 14-19 s, a detached xl create 35-40 s), with headroom.
COMMAND_TIMEOUT = 120
GUEST_BOOT_TIMEOUT = 600
DHCP_TIMEOUT = 180
MEMORY_RETURN_TIMEOUT = 180


def lifecycle_options(**overrides):
    """The lifecycle check's options for this suite (bundled configs only, TCG-sized timeouts)."""
    settings = {"config_glob": BUNDLE_CONFIG_GLOB, "command_timeout": COMMAND_TIMEOUT,
                "guest_boot_timeout": GUEST_BOOT_TIMEOUT, "dhcp_timeout": DHCP_TIMEOUT,
                "memory_timeout": MEMORY_RETURN_TIMEOUT, "xl_timeout": GUEST_BOOT_TIMEOUT}
    settings.update(overrides)
    return LifecycleOptions(**settings)


def host_steps(*names):
    """The lifecycle's host steps of these names, in the lifecycle's order."""
    unknown = set(names) - {step.name for step in HOST_STEPS}
    if unknown:
        raise ValueError(f"no host step named {', '.join(sorted(unknown))}")
    return tuple(step for step in HOST_STEPS if step.name in names)


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

    def run_steps(self, shell, plan, **options):
        """Run lifecycle ``plan`` over ``shell``; log every step; return the report."""
        report = run_lifecycle(shell, lifecycle_options(**options), plan,
                               on_result=lambda result: self.logger.info("xen: %s", result.line()))
        self.logger.info("xen: %s", report.summary().splitlines()[0])
        return report

    def assert_passed(self, report, subject):
        """Every step of ``subject`` passed or was skipped with a reason."""
        failed = [r for r in report.of(subject) if r.outcome not in (Outcome.PASS, Outcome.SKIP)]
        self.assertFalse(failed, "\n".join(f"{r.outcome.value} {r.subject}: {r.step}: {r.detail}" for r in failed))

    @OEHasPackage(XL_PACKAGES)
    @OETimeout(600)
    def test_dom0_is_up(self):
        with runner_serial_console(self.runner) as shell:
            report = self.run_steps(shell, LifecyclePlan(host_steps("toolstack", "dom0"), ()))
        self.assert_passed(report, "dom0")

    @OETestDepends(["xen.XenTest.test_dom0_is_up"])
    @OETimeout(300)
    def test_dom0_bridge_has_dhcp_address(self):
        with runner_serial_console(self.runner) as shell:
            report = self.run_steps(shell, LifecyclePlan(host_steps("toolstack", "bridge"), ()))
        self.assert_passed(report, "dom0")
        self.assertEqual([r.outcome for r in report.of("dom0")], [Outcome.PASS, Outcome.PASS])

    @OETestDepends(["xen.XenTest.test_dom0_bridge_has_dhcp_address"])
    @OETimeout(300)
    def test_dom0_fetches_over_http(self):
        if not getattr(self.runner, "use_slirp", False):
            self.skipTest("the server listens on the build host's loopback, which only slirp (10.0.2.2) reaches")
        with runner_serial_console(self.runner) as shell, LoopbackHttpServer(guest_host="10.0.2.2") as http:
            report = self.run_steps(shell, LifecyclePlan(host_steps("bridge", "http"), ()), http=http)
        self.assertEqual([(r.step, r.outcome) for r in report.of("dom0")],
                         [("bridge", Outcome.PASS), ("http", Outcome.PASS)], report.summary())

    @OETestDepends(["xen.XenTest.test_dom0_is_up"])
    @OETimeout(600)
    def test_autostarted_guests_run_after_boot(self):
        with runner_serial_console(self.runner) as shell:
            report = self.run_steps(shell, LifecyclePlan(host_steps("guest configs", "autostart"), ()))
        self.assert_passed(report, "dom0")
        autostart = next(r for r in report.of("dom0") if r.step == "autostart")
        if autostart.outcome is Outcome.SKIP:
            self.skipTest(f"no guest is started at boot on this image: {autostart.detail}")

    @OETestDepends(["xen.XenTest.test_dom0_is_up"])
    @OETimeout(300)
    def test_bundled_guests_are_installed(self):
        config_step = next(step for step in GUEST_STEPS if step.name == "config")
        with runner_serial_console(self.runner) as shell:
            # (a guest started at boot is expected to exist: the autostart step tells which they are)
            report = self.run_steps(shell, LifecyclePlan(host_steps("guest configs", "autostart"),
                                                         (config_step, FILES_STEP)))
        self.assert_passed(report, "dom0")
        for guest in report.subjects()[1:]:
            with self.subTest(guest=guest):
                self.assert_passed(report, guest)

    @OETestDepends(["xen.XenTest.test_bundled_guests_are_installed",
                    "xen.XenTest.test_dom0_bridge_has_dhcp_address"])
    @OETimeout(3600)
    def test_bundled_guest_lifecycle(self):
        # QEMU's user network (slirp) maps 10.0.2.2 to the build host's loopback: the server
        # listens there only.  On a tap network the HTTP step is skipped.
        slirp = bool(getattr(self.runner, "use_slirp", False))
        with runner_serial_console(self.runner) as shell, \
                (LoopbackHttpServer(guest_host="10.0.2.2") if slirp else _no_server()) as http:
            # (Domain-0's memory was checked by test_dom0_is_up)
            plan = LifecyclePlan(host_steps("toolstack", "bridge", "guest configs", "autostart"), GUEST_STEPS)
            report = self.run_steps(shell, plan, http=http)
        self.assert_passed(report, "dom0")
        guests = [subject for subject in report.subjects() if subject != "dom0"]
        self.assertTrue(guests, "no bundled guest was checked")
        for guest in guests:
            with self.subTest(guest=guest):
                self.assert_passed(report, guest)


@contextmanager
def _no_server():
    yield None
