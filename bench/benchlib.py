"""Shared helpers of the benchmarks in bench/: target lookup, machine facts, result lines.

Every benchmark prints its raw times, the medians, the ratio, and one last line
``RESULT {json}`` that ``bench/run_all.py`` collects.  Ratios compare two things measured in the
same run (alternating, so both see the same machine load); absolute TCG times depend on the load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))


def resolve_target(path: str | None, arch: str = "arm64") -> str:
    """``path``, or the ``arch`` reference target's qemuboot.conf from ``xen-ref-target show``."""
    if path:
        return path
    env = dict(os.environ, PYTHONPATH=str(ROOT / "lib") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-m", "xenreftarget", "show", "--arch", arch], capture_output=True,
                            text=True, env=env, check=False)
    if result.returncode != 0:
        raise SystemExit("no target given and `xen-ref-target show` failed (build it with "
                         f"`xen-ref-target build --arch {arch}`):\n{result.stderr.strip()}")
    return str(json.loads(result.stdout)["qemuboot_conf"])


def target_parser(doc: str, runs: int) -> argparse.ArgumentParser:
    """An argument parser with the arguments every QEMU benchmark takes: TARGET and --runs."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("target", nargs="?", help="qemuboot.conf or YAML (default: xen-ref-target show)")
    parser.add_argument("--runs", type=int, default=runs, help=f"runs of each side (default {runs})")
    parser.add_argument("--arch", default="arm64", choices=("arm64", "amd64"),
                        help="without TARGET: which reference target (default arm64; amd64 boots as qemux86-64)")
    return parser


def machine_facts(qemu: str = "qemu-system-aarch64") -> dict[str, str]:
    """nproc, CPU model, load average now, QEMU version, kernel."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        version = subprocess.run([qemu, "--version"], capture_output=True, text=True, check=False).stdout.splitlines()[0]
    except (OSError, IndexError):
        version = "unknown"
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"
    return {"nproc": str(os.cpu_count()), "cpu": model, "loadavg": load, "qemu": version,
            "kernel": os.uname().release}


def rounded(values: Sequence[float], digits: int = 2) -> list[float]:
    """Values rounded for printing."""
    return [round(v, digits) for v in values]


def report(name: str, what: str, ours_label: str, ours: Sequence[float], base_label: str,
           base: Sequence[float], goal: float | None = None, extra: dict[str, object] | None = None) -> None:
    """Print medians, raw values and the ratio ours/base, then the ``RESULT`` line."""
    m_ours, m_base = statistics.median(ours), statistics.median(base)
    ratio = m_ours / m_base if m_base else float("nan")
    digits = 2 if min(m_ours, m_base) >= 1 else 4
    print(f"{ours_label}: median {m_ours:.4f}s raw {rounded(ours, digits)}")
    print(f"{base_label}: median {m_base:.4f}s raw {rounded(base, digits)}")
    verdict = "" if goal is None else (f" (goal <= {goal}: {'met' if ratio <= goal else 'NOT met'})")
    print(f"ratio {what}: {ratio:.3f}{verdict}", flush=True)
    result = {"name": name, "what": what, "ratio": round(ratio, 4), "goal": goal,
              "ours": {"label": ours_label, "median": round(m_ours, 4), "raw": rounded(ours, digits)},
              "base": {"label": base_label, "median": round(m_base, 4), "raw": rounded(base, digits)},
              "runs": len(ours), "load_after": machine_facts()["loadavg"]}
    if extra:
        result.update(extra)
    print("RESULT " + json.dumps(result), flush=True)
