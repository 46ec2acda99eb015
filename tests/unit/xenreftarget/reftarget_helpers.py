"""Helpers shared by the xenreftarget unit tests."""

import subprocess

from xenreftarget.packages import PackageRecord


def record(name: str, version: str = "1.0", sha: str = "0" * 64, depends: str = "") -> PackageRecord:
    """A package record as apt's index would give it."""
    return PackageRecord(name=name, version=version, architecture="arm64",
                         filename=f"pool/main/x/{name}/{name}_{version}_arm64.deb",
                         sha256=sha, size=100, depends=depends)


class FakeRunner:
    """Records commands and answers them from a table of (argv prefix -> result) rules."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.rules: list = []

    def on(self, prefix: list[str], stdout: str = "", returncode: int = 0, stderr: str = "",
           action=None) -> None:
        self.rules.append((prefix, stdout, returncode, stderr, action))

    def __call__(self, cmd, **kwargs) -> subprocess.CompletedProcess:
        cmd = list(cmd)
        self.calls.append(cmd)
        for prefix, stdout, code, stderr, action in self.rules:
            if cmd[:len(prefix)] == prefix:
                if action:
                    action(cmd, kwargs)
                return subprocess.CompletedProcess(cmd, code, stdout, stderr)
        raise AssertionError(f"unexpected command {cmd}")

