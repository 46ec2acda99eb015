"""xenbundle: bundle Xen guests into a host root filesystem, safely.

The engine behind the meta-xen-ref host image's guest bundling, with no BitBake
import so it is testable on its own:

* :mod:`xenbundle.xlcfg` - the xl.cfg(5) grammar with a lossless document model;
* :mod:`xenbundle.disk` - xl-disk-configuration(5) specs;
* :mod:`xenbundle.guests` - ``XEN_BUNDLED_GUESTS`` entries and generated configs;
* :mod:`xenbundle.entries` - ``recipe[:tag]`` entries of ``BUNDLED_XEN_GUESTS`` and
  ``XEN_GUEST_BUNDLES`` (meta-virtualization's interface);
* :mod:`xenbundle.settings` - per-guest settings in both key forms, entry requests;
* :mod:`xenbundle.recipeguests` - the recipe entries resolved into guest configs;
* :mod:`xenbundle.bundles` and :mod:`xenbundle.bundletree` - bundle packages: merging
  installed ones (ours and meta-virtualization's), building their file tree;
* :mod:`xenbundle.imports` - third-party guest images (rootfs_dir, qcow2, ext4, raw);
* :mod:`xenbundle.sources` - a guest config before its files are resolved;
* :mod:`xenbundle.deploydir` - what a deploy-dir name really is, read without surprises;
* :mod:`xenbundle.plan` - validation and the bundle plan (nothing written);
* :mod:`xenbundle.rootfs` - the one primitive that writes into the rootfs, and its rollback;
* :mod:`xenbundle.sparse` - hole-preserving copies;
* :mod:`xenbundle.install` - all-or-nothing installation into the rootfs;
* :mod:`xenbundle.errors` - :class:`BundleError` and the bounds on error reports;
* :mod:`xenbundle.wiring` - parse-time wiring of the bbclasses: which recipes a host
  waits for, which deploy-dir files are third-party inputs, per-guest settings.

Typical use (what the bbclass does in ``do_rootfs``)::

    from xenbundle import bundle_guests, BundleError
    result = bundle_guests(rootfs, deploy_dir, "guest.rootfs.ext4:Image", autostart=["guest"])
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .errors import BundleError
    from .guests import GuestSettings, parse_bundled_guests
    from .install import BundleResult, InstalledGuest, bundle_guests
    from .plan import BundlePlan, plan_bundle

# Exports are loaded on first use (PEP 562), so that `python3 -m xenbundle.xlcfg`
# does not import the module twice.
_EXPORTS = {
    "BundleError": "errors",
    "GuestSettings": "guests",
    "parse_bundled_guests": "guests",
    "BundleResult": "install",
    "InstalledGuest": "install",
    "bundle_guests": "install",
    "BundlePlan": "plan",
    "plan_bundle": "plan",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'xenbundle' has no attribute {name!r}")
    from importlib import import_module
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = [
    "BundleError",
    "BundlePlan",
    "BundleResult",
    "GuestSettings",
    "InstalledGuest",
    "bundle_guests",
    "parse_bundled_guests",
    "plan_bundle",
]
