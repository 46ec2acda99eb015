"""A program a test spawns can be hung up and interrupted, even when pytest was started under nohup."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

IGNORED_BIT = {"SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3}


def ignored_signals_of(pid: int) -> set[str]:
    status = Path(f"/proc/{pid}/status").read_text()
    mask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigIgn:")), 16)
    return {name for name, number in IGNORED_BIT.items() if mask & (1 << (number - 1))}


def test_a_spawned_program_does_not_ignore_hangup_or_interrupt() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert ignored_signals_of(child.pid) == set()
    finally:
        child.kill()
        child.wait()


def test_pytest_under_nohup_still_spawns_programs_that_can_be_hung_up(tmp_path: Path) -> None:
    """The run under test: nohup (SIGHUP ignored) and a background job (SIGINT, SIGQUIT ignored)."""
    (tmp_path / "test_child.py").write_text(
        "import subprocess, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_signal_dispositions import ignored_signals_of\n"
        "def test_child():\n"
        "    child = subprocess.Popen(['sleep', '30'])\n"
        "    try:\n"
        "        assert ignored_signals_of(child.pid) == set()\n"
        "    finally:\n"
        "        child.kill(); child.wait()\n")
    (tmp_path / "conftest.py").write_text((Path(__file__).parent / "conftest.py").read_text())
    script = (f"trap '' INT QUIT; exec nohup {sys.executable} -m pytest -p no:cacheprovider -q "
              f"--rootdir {tmp_path} {tmp_path / 'test_child.py'}")
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout
