"""A guest config before its files are resolved: what every bundling form produces.

Each form (``XEN_BUNDLED_GUESTS`` pairs, deploy-dir configs, recipe entries of
``BUNDLED_XEN_GUESTS``/``XEN_GUEST_BUNDLES``, installed bundle packages) turns its
guests into :class:`GuestSource` objects; :mod:`xenbundle.plan` then resolves
their files, checks them against each other and against the rootfs the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .xlcfg import XlConfig

__all__ = ["GuestSource"]


@dataclass
class GuestSource:
    """A guest config and where its file references are looked up.

    ``origin`` names the guest's source in messages; ``source_config`` is the config
    file read (its line numbers are quoted), ``None`` for a generated config.
    Relative references are resolved in ``base_dir`` (the deploy directory when
    ``None``); absolute ones must lie in ``base_dir`` or one of ``search_dirs``.
    ``rootfs_ref``/``kernel_ref`` are the references an entry resolved to (for the
    manifest of a bundle package); ``entry`` is the entry name of recipe forms.
    """

    origin: str
    config_name: str
    config: XlConfig
    generated: bool
    source_config: str | None
    labels: dict[str, str] = field(default_factory=dict)
    base_dir: str | None = None
    search_dirs: tuple[str, ...] = ()
    autostart: bool = False
    rootfs_ref: str | None = None
    kernel_ref: str | None = None
    entry: str | None = None
