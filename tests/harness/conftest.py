"""Fixtures for the harness tests: real shells behind a noise-injecting pseudo-terminal."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Callable

import pexpect
import pytest
from xenqemu.console import ConsoleChannel, Transcript
from xq_harness_helpers import HERE, SHELLS

#: The PATH the shells run with, and the Debian package of each shell program in SHELLS.
SHELL_PATH = "/usr/bin:/bin"
SHELL_PACKAGES = {"bash": "bash", "busybox": "busybox"}


def require_program(program: str) -> None:
    """Fail the test with the fix when ``program`` is not installed (not a closed console later)."""
    if shutil.which(program, path=SHELL_PATH) is None:
        package = SHELL_PACKAGES.get(program, "see scripts/setup-host.packages")
        pytest.fail(f"{program} is not installed: run scripts/setup-host (Debian package {package})",
                    pytrace=False)


@pytest.fixture(params=sorted(SHELLS))
def shell_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def spawn_noisy(tmp_path: Path) -> Iterator[Callable[..., pexpect.spawn]]:
    """Start a real shell behind noisy_shell.py; the spawns are closed after the test."""
    spawns: list[pexpect.spawn] = []

    with ExitStack() as logs:
        def start(shell: list[str], seed: int = 1, rate: float = 0.3, quiet: bool = False) -> pexpect.spawn:
            require_program(shell[0])
            args = [str(HERE / "noisy_shell.py"), "--seed", str(seed), "--rate", str(rate)]
            if quiet:
                args.append("--quiet")
            child = pexpect.spawn(sys.executable, args + ["--"] + shell, timeout=30, cwd=str(tmp_path),
                                  env={"PATH": SHELL_PATH, "HOME": str(tmp_path), "PS1": "root@host:~# "})
            child.logfile_read = logs.enter_context(open(tmp_path / f"console-{len(spawns)}.log", "wb"))
            spawns.append(child)
            return child

        yield start
        for child in spawns:
            child.close(force=True)


@pytest.fixture
def noisy_channel(spawn_noisy: Callable[..., pexpect.spawn], shell_name: str, tmp_path: Path) -> ConsoleChannel:
    """A logged-in channel on a noisy real shell (bash or busybox ash)."""
    channel = ConsoleChannel(spawn_noisy(SHELLS[shell_name]), name=shell_name,
                             transcript=Transcript(tmp_path / "run"), default_timeout=60)
    channel.login(timeout=60)
    return channel

