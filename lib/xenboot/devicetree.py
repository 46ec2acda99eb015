"""The dom0less device tree for QEMU and the loader devices that place its modules.

:func:`dump_machine_dtb` asks QEMU for the tree of the machine as it will run (same machine,
CPU, vCPU count and RAM options), :func:`merged_source` adds the ``/chosen`` nodes of a
:class:`~xenboot.dom0less.Dom0lessLayout` to its source (dtc merges a node written twice; the
random ``rng-seed``/``kaslr-seed`` of the dump are left out so the tree is reproducible),
:func:`compile_dts` runs ``dtc`` (package device-tree-compiler), :func:`loader_options` gives
the ``-device loader`` options, and :func:`qemuboot_variables` the ``QB_DTB``/``QB_OPT_APPEND``
values that make runqemu and the harness boot it with ``-dtb``.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from .contract import DEPLOY_DIR_PLACEHOLDER
from .dom0less import Dom0lessLayout, chosen_fragment
from .errors import BootConfigError
from .qemuopts import format_option

__all__ = ["compile_dts", "decompile_dtb", "dom0less_domains_in", "dump_machine_dtb", "loader_options", "merged_source",
           "qemuboot_variables"]

_SEED = re.compile(r"^\s*(rng-seed|kaslr-seed)\s*=.*;\s*$\n?", re.MULTILINE)


def _run(argv: Sequence[str], what: str, fix: str, timeout: float = 120) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise BootConfigError(f"{what}: {argv[0]} could not run ({err})", fix) from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-600:]
        raise BootConfigError(f"{what}: {' '.join(argv[:3])}... exited {done.returncode}: {tail}", fix)
    return done.stdout


def dump_machine_dtb(qemu: str, machine_args: Sequence[str], output: Path) -> Path:
    """Write the device tree QEMU builds for ``machine_args`` (``-machine virt,...``, ``-cpu``...).

    ``machine_args`` must hold exactly one ``-machine`` option; ``dumpdtb=`` is added to it.
    """
    args = list(machine_args)
    positions = [i for i, arg in enumerate(args[:-1]) if arg == "-machine"]
    if len(positions) != 1:
        raise BootConfigError(f"{len(positions)} -machine options in {' '.join(args)!r}",
                              "give the machine options of QB_MACHINE (one -machine)", key="QB_MACHINE")
    args[positions[0] + 1] += f",dumpdtb={output}"
    # -nic none: no default NIC, whose PCI boot ROM (ipxe-qemu's efi-virtio.rom, only recommended
    # by qemu-system-arm) QEMU would load; a PCI device does not change the device tree
    _run([qemu, *args, "-nographic", "-display", "none", "-nic", "none"], "dumping the machine's device tree",
         "install qemu-system-arm and check the machine options (QB_MACHINE, QB_CPU, QB_SMP, QB_MEM)")
    if not output.is_file():
        raise BootConfigError(f"QEMU wrote no device tree to {output}", "check the machine options",
                              key="QB_MACHINE")
    return output


def decompile_dtb(dtb: Path, dtc: str = "dtc") -> str:
    """The source of a compiled tree (``dtc -I dtb -O dts``); ``dtc`` is the program to run."""
    return _run([dtc, "-q", "-I", "dtb", "-O", "dts", str(dtb)], f"decompiling {dtb}",
                "install device-tree-compiler (dtc)")


def merged_source(machine_dts: str, layout: Dom0lessLayout) -> str:
    """The machine's tree source with the dom0less ``/chosen`` nodes added."""
    return _SEED.sub("", machine_dts).rstrip() + "\n\n" + chosen_fragment(layout)


def compile_dts(source: str, output: Path, dtc: str = "dtc") -> Path:
    """Compile ``source`` into ``output`` (``dtc -I dts -O dtb``), with room for later edits."""
    source_path = output.with_suffix(".dts")
    source_path.write_text(source)
    _run([dtc, "-q", "-I", "dts", "-O", "dtb", "-p", "4096", "-o", str(output), str(source_path)],
         f"compiling {source_path}", "the generated source is wrong: report it with the .dts file")
    return output


def loader_options(layout: Dom0lessLayout, deploy_dir: str = DEPLOY_DIR_PLACEHOLDER) -> list[str]:
    """``-device loader,file=...,addr=...,force-raw=on`` for every module, dom0's first."""
    out: list[str] = []
    for module in layout.modules():
        out += ["-device", format_option("loader", [("file", f"{deploy_dir}/{module.file}"),
                                                    ("addr", f"{module.address:#x}"),
                                                    ("force-raw", "on")])]
    return out


def qemuboot_variables(layout: Dom0lessLayout, dtb_name: str) -> dict[str, str]:
    """``QB_DTB`` and ``QB_OPT_APPEND`` (loaders instead of guest-loaders) and the domains' list.

    ``QB_XEN_DOM0LESS`` lists the domains (``name`` words, in the order Xen creates them, so
    the n-th is domain ID n); ``QB_XEN_DOM0LESS_BOOTARGS_<n>`` holds the n-th one's command line.
    """
    values = {"QB_DTB": dtb_name,
              "QB_OPT_APPEND": " ".join(shlex.quote(word) for word in loader_options(layout)),
              "QB_XEN_DOM0LESS": " ".join(domain.name for domain, _k, _r in layout.domains)}
    for index, (domain, _kernel, _ramdisk) in enumerate(layout.domains, start=1):
        values[f"QB_XEN_DOM0LESS_BOOTARGS_{index}"] = domain.bootargs
    return values


def dom0less_domains_in(values: Mapping[str, str]) -> list[tuple[str, str]]:
    """``(name, command line)`` of each dom0less domain a qemuboot.conf lists, in domain-ID order."""
    names = (values.get("QB_XEN_DOM0LESS") or "").split()
    return [(name, (values.get(f"QB_XEN_DOM0LESS_BOOTARGS_{index}") or "").strip())
            for index, name in enumerate(names, start=1)]
