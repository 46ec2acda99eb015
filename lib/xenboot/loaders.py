"""QEMU devices that place boot modules in guest memory.

QEMU's ``guest-loader`` device (``-device guest-loader,addr=A,kernel=F,bootargs=B`` or
``...,initrd=F``) loads a file at ``A`` and describes it in the device tree QEMU generates, as
a Xen multiboot module under ``/chosen`` (the first kernel is dom0's, its ``bootargs`` dom0's
command line).  Later boot flows add more kinds here (QEMU's generic ``loader`` device for
dom0less domains).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import BootConfigError
from .layout import Module
from .qemuopts import format_option, properties, split_option

__all__ = ["GUEST_LOADER", "GuestLoader", "guest_loaders_in"]

GUEST_LOADER = "guest-loader"


@dataclass(frozen=True)
class GuestLoader:
    """One ``-device guest-loader``: a kernel (with ``bootargs``) or an initrd at ``addr``.

    ``name`` says what it is in messages (``dom0 kernel``); ``setting`` names the variable that
    places it (``QB_XEN_DOM0_ADDR``), for fixes.
    """

    addr: int
    path: str
    kind: str = "kernel"                 #: "kernel" or "initrd"
    bootargs: str | None = None          #: plain text; escaped when the device is written
    name: str = "dom0 kernel"
    setting: str = "QB_XEN_DOM0_ADDR"

    def __post_init__(self) -> None:
        if self.kind not in ("kernel", "initrd"):
            raise BootConfigError(f"guest-loader kind {self.kind!r}", "use 'kernel' or 'initrd'",
                                  key=self.setting)
        if self.bootargs is not None and self.kind != "kernel":
            raise BootConfigError("bootargs on an initrd guest-loader", "give bootargs to the kernel",
                                  key=self.setting)

    def device(self) -> str:
        """The ``-device`` value: ``guest-loader,addr=0x...,kernel=...,bootargs=...`` (escaped)."""
        props = [("addr", f"{self.addr:#x}"), (self.kind, self.path)]
        if self.bootargs is not None:
            props.append(("bootargs", self.bootargs))
        return format_option(GUEST_LOADER, props)

    def module(self, size: int) -> Module:
        """This loader's file as a :class:`~xenboot.layout.Module` of ``size`` bytes."""
        return Module(self.name, self.addr, size, self.setting)

    def file_size(self) -> int | None:
        """Size of the file, or None when it does not exist (yet)."""
        try:
            return os.stat(self.path).st_size
        except OSError:
            return None


def guest_loaders_in(args: Sequence[str]) -> list[GuestLoader]:
    """The guest-loader devices of an argv fragment, in order (``-device guest-loader,...``).

    The first kernel is dom0's; further kernels and every initrd are named by their position.
    Raises :class:`BootConfigError` for a guest-loader without ``addr`` or without a file.
    """
    found: list[GuestLoader] = []
    for option, value in zip(args, args[1:]):
        if option != "-device" or split_option(value)[0] != GUEST_LOADER:
            continue
        props = properties(value)
        kind = "kernel" if "kernel" in props else "initrd"
        if kind not in props or "addr" not in props:
            raise BootConfigError(f"'-device {value}' names no kernel= or initrd=, or no addr=",
                                  "give every guest-loader an addr= and a kernel= or initrd=")
        try:
            addr = int(props["addr"], 0)
        except ValueError:
            raise BootConfigError(f"guest-loader addr={props['addr']} is not a number",
                                  "write the address like 0x49000000") from None
        count = sum(1 for loader in found if loader.kind == kind)
        name = f"dom0 {kind}" if count == 0 else f"guest-loader {kind} #{count + 1}"
        found.append(GuestLoader(addr, props[kind], kind, props.get("bootargs"), name,
                                 f"-device guest-loader ({name})"))
    return found
