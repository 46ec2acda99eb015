#!/usr/bin/env python3
"""Run every benchmark of bench/ and print their ratios with the machine they ran on.

Usage: ``bench/run_all.py [TARGET] [--runs N] [--only NAME ...] [--update-readme]``

TARGET is a qemuboot.conf or YAML target (default: the reference target from
``xen-ref-target show``).  ``--runs`` is passed to every benchmark (the sparse copy benchmark
gets ``max(N, 5)``: it takes milliseconds; the bad-config benchmark ``min(N, 3)``: each run
parses 200 MB); the generations benchmark takes no TARGET (it boots both Xen generations'
reference targets, ``xen-ref-target show --debian bookworm|trixie``).  Each benchmark runs in
its own process; its output
is shown as it comes, and its ``RESULT`` line is collected.  At the end a Markdown table of the
ratios and medians is printed, headed by the machine's facts (nproc, CPU model, load average
before and after, QEMU version); ``--update-readme`` also writes it into bench/README.md between
the ``<!-- results:begin -->`` and ``<!-- results:end -->`` lines.  The exit status is 1 if a
benchmark failed (a goal not met is reported, not a failure).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchlib import ROOT, machine_facts, resolve_target, target_parser

BENCHMARKS = {
    "warm": "bench_warm.py",
    "boot": "bench_boot.py",
    "guest": "bench_guest.py",
    "oeqa": "bench_oeqa.py",
    "sparse": "bench_sparse_copy.py",
    "badcfg": "bench_bad_config.py",
    "dom0less": "bench_dom0less.py",
    "generations": "bench_generations.py",
}
# Benchmarks of the bundler: no QEMU target, milliseconds to seconds per run.
NO_TARGET = {"sparse", "badcfg"}
# Benchmarks that find their own targets: both Xen generations' reference targets.
OWN_TARGETS = {"generations"}
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def run_one(name: str, target: str, runs: int) -> list[dict[str, object]]:
    """Run one benchmark script, echo its output, return its RESULT records."""
    script = HERE / BENCHMARKS[name]
    if name == "sparse":
        argv = [sys.executable, str(script), "--runs", str(max(runs, 5))]
    elif name == "badcfg":
        argv = [sys.executable, str(script), "--runs", str(min(runs, 3))]
    elif name in OWN_TARGETS:
        argv = [sys.executable, str(script), "--runs", str(runs)]
    else:
        argv = [sys.executable, str(script), target, "--runs", str(runs)]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "lib") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    print(f"== {name}: {' '.join(argv[1:])}", flush=True)
    results: list[dict[str, object]] = []
    started = time.monotonic()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("RESULT "):
            results.append(json.loads(line[len("RESULT "):]))
        else:
            print(f"   {line}", end="", flush=True)
    if process.wait() != 0:
        raise RuntimeError(f"benchmark {name} failed with status {process.returncode}")
    print(f"== {name} done in {time.monotonic() - started:.0f}s", flush=True)
    return results


def markdown(results: list[dict[str, object]], before: dict[str, str], after: dict[str, str], runs: int) -> str:
    """The results table with the machine facts."""
    lines = [
        (f"Measured {time.strftime('%Y-%m-%d %H:%M %Z')} with `bench/run_all.py --runs {runs}` on: "
         f"{before['nproc']} CPUs ({before['cpu'] or 'unknown CPU'}), Linux {before['kernel']}, "
         f"{before['qemu']}; load average {before['loadavg']} before, {after['loadavg']} after "
         "(1, 5, 15 min)."),
        "",
        "| benchmark | ratio | goal | ours: median (raw) | baseline: median (raw) |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        ours, base = r["ours"], r["base"]  # type: ignore[index]
        goal = "" if r.get("goal") is None else f"≤ {r['goal']}"
        verdict = "" if r.get("goal") is None else (" ✓" if r["ratio"] <= r["goal"] else " ✗")  # type: ignore[operator]
        lines.append(f"| {r['what']} | **{r['ratio']:.3f}**{verdict} | {goal} | "
                     f"{ours['label']}: {ours['median']:.4g} s {ours['raw']} | "  # type: ignore[index]
                     f"{base['label']}: {base['median']:.4g} s {base['raw']} |")  # type: ignore[index]
        if "setup_median" in r:
            lines.append(f"| of which the harness's own boot to `login:` / its login + protocol set-up | | | "
                         f"{r['harness_login_median']} s / {r['setup_median']} s | |")
            if "fastest_ratio" in r:
                lines.append(f"| fastest run / fastest run (same dom0 boot mode on both sides) | "
                             f"**{r['fastest_ratio']:.3f}** | | {min(ours['raw'])} s | {min(base['raw'])} s |")  # type: ignore[index]
        if "rss" in r:
            rss = r["rss"]  # type: ignore[assignment]
            lines.append(f"| peak RSS, bad / valid ({r['size_mib']} MiB config; the interpreter alone "
                         f"{r['interpreter_rss_mib']} MiB) | **{rss['ratio']}** | | "
                         f"{rss['bad_mib']} MiB ({r['problems']} problems, a {r['message_bytes']}-byte "
                         f"message) | {rss['valid_mib']} MiB |")
        if "allocated" in r:
            alloc = r["allocated"]  # type: ignore[assignment]
            lines.append(f"| allocated blocks, ours / cp ({r['disk_gib']} GiB disk, {r['data_mib']} MiB data) | "
                         f"**{alloc['ratio']}** | | {alloc['ours_median']} bytes | {alloc['cp_median']} bytes |")
    return "\n".join(lines) + "\n"


def update_readme(block: str) -> None:
    """Replace the results block of bench/README.md."""
    readme = HERE / "README.md"
    text = readme.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{readme}: no {BEGIN} ... {END} block to update")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{block}{END}{tail}", encoding="utf-8")
    print(f"updated {readme}")


def main() -> int:
    parser = target_parser(__doc__, runs=3)
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), default=[],
                        help="run only this benchmark (repeatable)")
    parser.add_argument("--update-readme", action="store_true", help="write the table into bench/README.md")
    args = parser.parse_args()
    names = args.only or list(BENCHMARKS)
    target = resolve_target(args.target, args.arch) if set(names) - NO_TARGET - OWN_TARGETS else ""
    before = machine_facts()
    print(f"machine: {before}", flush=True)
    results: list[dict[str, object]] = []
    failed = []
    for name in names:
        try:
            results.extend(run_one(name, target, args.runs))
        except RuntimeError as err:
            print(f"== {err}", flush=True)
            failed.append(name)
    after = machine_facts()
    block = markdown(results, before, after, args.runs)
    print("\n" + block)
    if args.update_readme and results:
        update_readme(block)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
