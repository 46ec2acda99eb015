"""Command line of the reference target builder:
``xen-ref-target build [--debian SUITE] [--arch ARCH] [--cache DIR] [--force]``.

``--debian`` chooses the Debian release and with it the Xen generation (bookworm: 4.17, the
default; trixie: 4.20), ``--arch`` the architecture and with it the machine (arm64: qemuarm64,
the default; amd64: qemux86-64); each combination is built and cached on its own.

A thin layer over :func:`xenreftarget.build.build_target`; exit status 0 on success, 1 when the
build fails (the message says which step and what to do), 2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from xenboot import BootConfigError

from .build import build_target, current_reference_target, default_cache_dir
from .errors import ReferenceTargetError
from .machines import MACHINES
from .packages import DEFAULT_SUITE, SUPPORTED, XEN_BY_SUITE, Distro


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xen-ref-target",
        description="Build the reference Xen target (Xen, dom0 and bundled guests) from Debian "
                    "packages (arm64 or amd64), for QEMU.")
    sub = parser.add_subparsers(dest="command", required=True)
    cache_help = (f"cache folder (default: $XEN_REF_CACHE or "
                  f"${{XDG_CACHE_HOME:-~/.cache}}/meta-xen-ref/reftarget; now {default_cache_dir()})")
    suites = sorted({suite for suite, _ in SUPPORTED})
    debian_help = ("Debian release the target is built from, which chooses the Xen generation: "
                   + ", ".join(f"{s} (Xen {XEN_BY_SUITE[s]})" for s in suites)
                   + f"; default {DEFAULT_SUITE}")
    build = sub.add_parser("build", help="build the target, or reuse it when nothing changed")
    show = sub.add_parser("show", help="print the current target's manifest summary as JSON")
    for command in (build, show):
        command.add_argument("--debian", choices=suites, default=DEFAULT_SUITE, help=debian_help)
        command.add_argument("--arch", choices=sorted(MACHINES), default="arm64",
                             help="Debian architecture of the target (default arm64, booted as qemuarm64; "
                                  "amd64 is booted as qemux86-64)")
        command.add_argument("--cache", type=Path, default=None, help=cache_help)
    build.add_argument("--force", action="store_true", help="rebuild even when up to date")
    return parser


def _log(message: str) -> None:
    print(f"xen-ref-target: {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``xen-ref-target`` console script."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "build":
            start = time.monotonic()
            target = build_target(args.cache, force=args.force, log=_log, distro=Distro(args.debian, args.arch))
            _log(f"{'built' if target.rebuilt else 'reused'} in {time.monotonic() - start:.1f} s")
            _log(f"qemuboot.conf: {target.qemuboot_conf}")
            for guest in target.guests:
                _log(f"guest {guest['name']}: {guest['config']}")
            return 0
        target = current_reference_target(args.cache, Distro(args.debian, args.arch))
        summary = {"deploy_dir": str(target.deploy_dir), "qemuboot_conf": str(target.qemuboot_conf),
                   "distro": target.manifest.get("distro", {}),
                   "guests": target.guests, "shutdown_marker": target.manifest.get("shutdown_marker"),
                   "poweroff_ends_qemu": target.manifest.get("poweroff_ends_qemu", True),
                   "timings_s": target.manifest.get("timings_s", {})}
        print(json.dumps(summary, indent=2))
        return 0
    except (ReferenceTargetError, BootConfigError) as err:
        print(f"xen-ref-target: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("xen-ref-target: interrupted; the previous target (if any) is unchanged", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
