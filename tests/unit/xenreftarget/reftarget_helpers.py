"""Helpers shared by the xenreftarget unit tests."""

import subprocess

from xenreftarget.packages import PackageRecord


def record(name: str, version: str = "1.0", sha: str = "0" * 64, depends: str = "") -> PackageRecord:
    """A package record as apt's index would give it."""
    return PackageRecord(name=name, version=version, architecture="arm64",
                         filename=f"pool/main/x/{name}/{name}_{version}_arm64.deb",
                         sha256=sha, size=100, depends=depends)


def without_options(cmd: list[str]) -> list[str]:
    """``cmd`` without apt's ``-o KEY=VALUE`` pairs and quiet flags (what rules are matched on)."""
    out, skip = [], False
    for word in cmd:
        if skip:
            skip = False
        elif word == "-o":
            skip = True
        elif word not in ("-q", "-qq"):
            out.append(word)
    return out


class FakeRunner:
    """Records commands and answers them from a table of (argv prefix -> result) rules.

    Rules match the command without apt's ``-o`` options and ``-q`` flags (see
    :func:`without_options`); ``calls`` records the commands as they were given.
    """

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.rules: list = []

    def on(self, prefix: list[str], stdout: str = "", returncode: int = 0, stderr: str = "",
           action=None) -> None:
        self.rules.append((prefix, stdout, returncode, stderr, action))

    def __call__(self, cmd, **kwargs) -> subprocess.CompletedProcess:
        cmd = list(cmd)
        self.calls.append(cmd)
        bare = without_options(cmd)
        for prefix, stdout, code, stderr, action in self.rules:
            if bare[:len(prefix)] == prefix:
                if action:
                    action(cmd, kwargs)
                return subprocess.CompletedProcess(cmd, code, stdout, stderr)
        raise AssertionError(f"unexpected command {cmd}")

