"""A dom0less guest's login prompt, which Xen prints on the shared serial line as
"(XEN) DOM1: <name> login: ", is not dom0's: neither the boot's login phase nor the login
answers it, and dom0's own prompt that follows is the one they take."""

from __future__ import annotations

import pexpect
from xenqemu.boot import BootTimeouts, wait_boot_phases
from xenqemu.console import ConsoleChannel, ConsoleStream

BOOT = ("(XEN) Xen version 4.17.7 (Debian)\n"
        "(XEN) *** Serial input to DOM0 (type 'CTRL-a' three times to switch input)\n"
        "[    0.000000] Booting Linux on physical CPU 0x0\n")
DOM1_PROMPT = "(XEN) DOM1: dom0less-guest login: "
DOM0_PROMPT = "\nqemuarm64 login: "


class Scripted:
    """A console that delivers ``parts`` one per read, then stays silent; records what is typed."""

    def __init__(self, *parts: str) -> None:
        self.parts = list(parts)
        self.typed = ""

    def read_nonblocking(self, size: int, timeout: float) -> str:
        if not self.parts:
            raise pexpect.TIMEOUT("silent")
        return self.parts.pop(0)

    def send(self, text: str) -> int:
        self.typed += text
        return len(text)


def test_the_login_phase_waits_for_dom0s_prompt_not_the_dom0less_guests() -> None:
    stream = ConsoleStream(Scripted(BOOT, DOM1_PROMPT, "[    9.0] xen:cpu_hotplug: x\n", DOM0_PROMPT))  # type: ignore[arg-type]
    phases = wait_boot_phases(stream, BootTimeouts().scaled(0.01))
    login = next(p for p in phases if p.name == "login_prompt")
    assert login.evidence.endswith("qemuarm64 login:")
    assert stream.buffer.rstrip().endswith("qemuarm64 login:")


def test_the_login_answers_dom0s_prompt_only() -> None:
    console = Scripted(DOM1_PROMPT)
    channel = ConsoleChannel(console)  # type: ignore[arg-type]
    assert channel._read_until_prompt(deadline=0.0) == "", "a Xen-prefixed line is no prompt"
    assert console.typed == ""
    console.parts.append(DOM0_PROMPT)
    assert channel._read_until_prompt(deadline=10**9).endswith("qemuarm64 login: ")
