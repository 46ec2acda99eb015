"""Shared constants of the harness tests (a uniquely named module, importable from any test dir)."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
#: Real shells the console protocol is tested against (dom0 runs busybox ash).
SHELLS = {
    "bash": ["bash", "--norc", "--noprofile", "-i"],
    "busybox-ash": ["busybox", "sh", "-i"],
}
