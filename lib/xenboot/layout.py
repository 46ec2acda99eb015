"""Where boot modules sit in guest RAM, and the checks that they fit without overlapping.

A *module* is anything the boot places at a fixed guest-physical address before the first
instruction runs: dom0's kernel and initrd (QEMU's ``guest-loader``), and later dom0less
domains' kernels, ramdisks and device-tree fragments.  :func:`check_layout` takes any number of
them, so adding a kind of module adds entries, not checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import BootConfigError

__all__ = ["ARM_VIRT_RAM_BASE", "MODULE_ALIGN", "Module", "RamRegion", "align_up", "check_layout"]

#: Start of RAM on QEMU's arm ``virt`` machine (32- and 64-bit).
ARM_VIRT_RAM_BASE = 0x40000000
#: Alignment used when suggesting an address: Xen and Linux on Arm want 2 MiB-aligned images.
MODULE_ALIGN = 0x200000
MiB = 1024 * 1024


def align_up(value: int, alignment: int = MODULE_ALIGN) -> int:
    """``value`` rounded up to a multiple of ``alignment``."""
    return (value + alignment - 1) // alignment * alignment


@dataclass(frozen=True)
class RamRegion:
    """Guest RAM: ``size`` bytes from ``base``; ``setting`` names what sets its size (for fixes)."""

    base: int
    size: int
    setting: str = "QB_MEM"

    @property
    def end(self) -> int:
        """First address after RAM."""
        return self.base + self.size


@dataclass(frozen=True)
class Module:
    """One blob at a fixed address: what it is, where, how big, and the setting that places it."""

    name: str
    address: int
    size: int
    setting: str

    @property
    def end(self) -> int:
        """First address after the module."""
        return self.address + self.size

    def describe(self) -> str:
        """``dom0 kernel (12.3 MiB at 0x49000000..0x49c4d000)``."""
        return f"{self.name} ({self.size / MiB:.1f} MiB at {self.address:#x}..{self.end:#x})"


def check_layout(modules: Sequence[Module], ram: RamRegion, *, path: str | None = None,
                 line_of: dict[str, int] | None = None) -> None:
    """Raise :class:`BootConfigError` if a module leaves RAM or two modules overlap.

    The error names the module, the setting to change and a value that fits; ``line_of`` maps
    settings to their line in ``path`` when they come from a file.
    """
    lines = line_of or {}
    for module in modules:
        if module.address < ram.base or module.end > ram.end:
            raise BootConfigError(
                f"{module.describe()} does not fit in RAM {ram.base:#x}..{ram.end:#x}",
                f"raise {ram.setting} or lower {module.setting} (RAM starts at {ram.base:#x})",
                path=path, key=module.setting, line=lines.get(module.setting))
    ordered = sorted(modules, key=lambda m: m.address)
    for lower, upper in zip(ordered, ordered[1:]):
        if lower.end > upper.address:
            raise BootConfigError(
                f"{lower.describe()} overlaps {upper.describe()}",
                f"set {upper.setting} to {align_up(lower.end):#x} or above, or move {lower.setting}",
                path=path, key=upper.setting, line=lines.get(upper.setting))
