"""True dom0less: the reference target's second boot, Xen with no dom0 and one guest it starts itself.

There is no dom0 shell, so the harness's boot (which waits for dom0's login) does not apply: QEMU
runs with the target's own command line (``xenqemu.cmdline.build_argv``) and the serial port on a
pipe, and the test talks to Xen's console: the guest's ``rcS`` line shows that Xen started it,
Ctrl-a three times moves the serial input to it (its virtual UART), it logs in and its
``/proc/cmdline`` is the one qemuboot.conf lists.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pexpect
import pytest
from xenboot.devicetree import dom0less_domains_in
from xenqemu.cmdline import RunPaths, build_argv
from xenqemu.target import load_target
from xenreftarget.dom0less import NO_DOM0_QEMUBOOT_CONF

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

_PLUMBING = {"-qmp": 1, "-chardev": 1, "-serial": 1, "-monitor": 1, "-S": 0}


def _argv_on_stdio(conf: Path, run_dir: Path) -> list[str]:
    argv = build_argv(load_target(str(conf)), RunPaths.in_dir(run_dir))
    out: list[str] = []
    skip = 0
    for arg in argv:
        if skip:
            skip -= 1
        elif arg in _PLUMBING:
            skip = _PLUMBING[arg]
        else:
            out.append(arg)
    return out + ["-serial", "stdio", "-monitor", "none"]


def test_xen_without_dom0_starts_the_guest_whose_console_answers(reference_target, tmp_path: Path):
    conf = reference_target.deploy_dir / NO_DOM0_QEMUBOOT_CONF
    ((name, bootargs),) = dom0less_domains_in(load_target(str(conf)).variables)
    argv = _argv_on_stdio(conf, tmp_path)
    assert not any("dom0_mem" in a for a in argv)
    child = pexpect.spawn(argv[0], argv[1:], timeout=900, encoding="utf-8", codec_errors="replace")
    child.logfile_read = (tmp_path / "console.log").open("w")
    try:
        child.expect(r"LOADING DOMU")
        child.expect(r"DOM1: rcS: guest ready")
        child.send("\x01\x01\x01")
        child.expect(r"Serial input to DOM1")
        time.sleep(1)
        child.send("\n")
        child.expect(re.escape(name) + r" login: ")
        time.sleep(0.3)
        child.send("root\n")
        child.expect(r"# ")
        time.sleep(0.3)
        for piece in ("echo CMD", "LINE:$(ca", "t /proc/c", "mdline):E", "ND\n"):  # the UART's FIFO is small
            child.send(piece)
            time.sleep(0.3)
        child.expect(r"CMDLINE:(?!\$\()([^\r\n]*?):END")
        assert child.match.group(1).replace("(XEN) ", "").strip() == bootargs
    finally:
        child.close(force=True)
