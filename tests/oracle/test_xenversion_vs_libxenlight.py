"""The 4.17 side of the versioned settings, from Debian's real libxenlight 4.17.

xl reads a configuration into libxenlight's types (``libxl_types.idl``); a setting
needs its type in the toolstack library.  libxenlight generates, for every enum
of its IDL, an exported ``libxl_<enum>_from_string`` (what xl calls for values
such as ``tee``), and for every struct ``libxl_<struct>_init``.  So for the
entries of xenbundle.xenversion.SYNTAX that came with a new type, libxenlight
4.17 shows that Xen 4.17 lacks them: the symbol is missing, or the enum parser
refuses the value.  Each is paired with a symbol of the same kind that 4.17 has,
so that a missing symbol is not an artefact of the lookup.

The other entries (settings such as ``nr_spis`` that are plain numbers or
booleans in libxl, vif ``vlan=``, the p9 limits) leave no trace in a library
symbol; their 4.17 side rests on the sources cited in the table (``xl_parse.c``
and ``xl.cfg.5.pod.in`` of RELEASE-4.17.0 do not have them), and the disk
keywords are compared with libxlutil 4.17 in test_disk_vs_libxlutil.py.
"""

from __future__ import annotations

import pytest
from libxlutil_ctypes import Oracle
from xenbundle.xenversion import (
    CONFIG_KEY,
    CONFIG_VALUE,
    P9_KEYWORD,
    XenVersion,
    lookup,
)

# (kind, name): the libxenlight symbol a Xen with that syntax exports (its IDL type's
# generated function, see libxl_types.idl of the release that added it).
TYPE_OF_NEWER_SYNTAX = {
    (CONFIG_KEY, "sve"): "libxl_sve_type_from_string",            # RELEASE-4.18.0
    (CONFIG_KEY, "smbios"): "libxl_smbios_type_from_string",      # RELEASE-4.18.0
    (CONFIG_KEY, "virtio"): "libxl_device_virtio_init",           # RELEASE-4.18.0
    (CONFIG_KEY, "arm_sci"): "libxl_arm_sci_type_from_string",    # RELEASE-4.21.0
    (CONFIG_KEY, "xenstore_quota"): "libxl_xs_quota_list_init",   # RELEASE-4.22.0
    (P9_KEYWORD, "type="): "libxl_p9_type_from_string",           # RELEASE-4.19.0
}
# Generated functions of the same kinds that 4.17 has.
PRESENT_IN_4_17 = ["libxl_tee_type_from_string", "libxl_gic_version_from_string",
                   "libxl_disk_specification_from_string", "libxl_device_disk_init",
                   "libxl_device_p9_init", "libxl_vuart_type_from_string"]


@pytest.mark.parametrize("symbol", PRESENT_IN_4_17)
def test_the_lookup_finds_what_4_17_has(libxlutil: Oracle, symbol: str) -> None:
    assert libxlutil.has_symbol(symbol)


@pytest.mark.parametrize("key,symbol", list(TYPE_OF_NEWER_SYNTAX.items()),
                         ids=[name for _, name in TYPE_OF_NEWER_SYNTAX])
def test_libxenlight_4_17_lacks_the_types_of_newer_settings(
        libxlutil: Oracle, key: tuple[str, str], symbol: str) -> None:
    entry = lookup(*key)
    assert entry is not None and entry.since is not None and entry.since > XenVersion(4, 17)
    assert not libxlutil.has_symbol(symbol), f"libxenlight 4.17 has {symbol}"


def test_tee_ffa_is_unknown_to_4_17_and_optee_is_known(libxlutil: Oracle) -> None:
    """xl 4.17 parses ``tee`` with libxl_tee_type_from_string: "ffa" fails ("Unknown tee")."""
    entry = lookup(CONFIG_VALUE, "tee", "ffa")
    assert entry is not None and entry.since == XenVersion(4, 18)
    assert libxlutil.enum_from_string("tee_type", "ffa") is False
    assert libxlutil.enum_from_string("tee_type", "optee") is True
    assert libxlutil.enum_from_string("tee_type", "none") is True


def test_qemu_xen_traditional_is_still_a_device_model_in_4_17(libxlutil: Oracle) -> None:
    """The value removed in 4.21 is one 4.17 knows (its enum, and xl_parse.c's strcmp)."""
    entry = lookup(CONFIG_VALUE, "device_model_version", "qemu-xen-traditional")
    assert entry is not None and entry.since is None and entry.removed == XenVersion(4, 21)
    assert libxlutil.enum_from_string("device_model_version", "qemu_xen_traditional") is True
