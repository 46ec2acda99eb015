"""The tree is type-checked and linted: ``mypy`` (``[tool.mypy]`` in pyproject: strict, on the lib/
packages) and ``ruff check .`` (the pinned ruff's default rules) report nothing.

Both run with the test environment's own tools (the test extras pin their versions), from the
repository root, so they read pyproject.toml exactly as a developer's run does.  A failure prints
every finding.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=1800, check=False)


def test_mypy_strict_reports_nothing() -> None:
    result = run_tool("mypy")
    assert result.returncode == 0, f"mypy found problems:\n{result.stdout}{result.stderr}"


def test_ruff_reports_nothing() -> None:
    result = run_tool("ruff", "check", "--output-format=concise", ".")
    assert result.returncode == 0, f"ruff found problems:\n{result.stdout}{result.stderr}"
