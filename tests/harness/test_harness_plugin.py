"""The pytest plugin: options registered, a clear failure (never a skip) without a target."""

from __future__ import annotations

import pytest

USES_HOST = """
def test_needs_host(xen_host):
    pass

def test_needs_guest(xen_guest):
    pass
"""


def test_options_are_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*--xenqemu-target*", "*--xenqemu-run-dir*", "*--xenqemu-timeout-scale*"])


def test_fixtures_fail_without_target(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XENQEMU_TARGET", raising=False)
    pytester.makepyfile(USES_HOST)
    result = pytester.runpytest()
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*xenqemu: no target configured. Pass --xenqemu-target PATH*"])
    assert "skipped" not in result.stdout.str()


def test_bad_target_is_reported(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XENQEMU_TARGET", raising=False)
    pytester.makepyfile(USES_HOST)
    target = pytester.path / "t.yaml"
    target.write_text("colour: blue\n")
    result = pytester.runpytest(f"--xenqemu-target={target}")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*t.yaml:1: key 'colour': unknown key. Fix: use one of*"])
