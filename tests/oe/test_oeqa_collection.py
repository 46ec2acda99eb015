"""oe-core's own OEQA loader collects this layer's runtime and selftest cases.

Each oe-core checkout (see conftest.py) is used in a fresh interpreter through
scripts/oe/list-oeqa-cases, which builds the same test contexts testimage and oe-selftest build
(OERuntimeTestContext / OESelftestTestContext) and loads the modules from the same directories:
oe-core's own cases, meta-virtualization's (when a checkout sits next to oe-core, as
setup-oe-env lays them out) and this layer's. A module that fails to import, or whose name
collides with a module of oe-core or meta-virtualization, makes the loader fail here.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.oecore

LAYER = Path(__file__).resolve().parents[2]
LIST_CASES = LAYER / "scripts" / "oe" / "list-oeqa-cases"

RUNTIME_CASES = {
    "xen.XenTest.test_dom0_is_up",
    "xen.XenTest.test_dom0_bridge_has_dhcp_address",
    "xen.XenTest.test_dom0_fetches_over_http",
    "xen.XenTest.test_autostarted_guests_run_after_boot",
    "xen.XenTest.test_bundled_guests_are_installed",
    "xen.XenTest.test_bundled_guest_lifecycle",
}
SELFTEST_CASES = {
    "xenref_bundling.XenRefBundlingTests." + name for name in (
        "test_auto_bundled_guest_is_installed",
        "test_bundled_guests_pair_is_installed",
        "test_config_in_deploy_dir_is_installed",
        "test_changing_the_guest_reruns_host_rootfs",
        "test_malformed_bundled_guests_stops_the_build",
        "test_missing_kernel_stops_the_build",
        "test_image_size_grows_with_bundled_guests",
    )
} | {
    # meta-virtualization's interface: the recipe form and the bundle-package form.
    "xenref_bundling.XenRefCompatTests." + name for name in (
        "test_recipe_entry_is_built_first_and_installed",
        "test_recipe_entry_with_two_values_stops_the_build",
        "test_our_bundle_package_is_merged",
        "test_meta_virtualization_bundle_package_is_merged",
        "test_imported_minirootfs_bundle_is_merged",
    )
}


def list_cases(oecore: Path, kind: str, modules: list[str]) -> dict:
    command = [sys.executable, str(LIST_CASES), "--oecore", str(oecore)]
    meta_virt = oecore.parent / "meta-virtualization"
    if meta_virt.is_dir():
        command += ["--layer", str(meta_virt)]
    result = subprocess.run(command + [kind] + modules, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, f"oe-core's loader failed ({oecore}):\n{result.stderr}"
    return json.loads(result.stdout)


def test_runtime_suite_xen_is_collected(oecore_checkouts: list[Path]) -> None:
    for oecore in oecore_checkouts:
        listing = list_cases(oecore, "runtime", ["xen"])
        assert set(listing["cases"]) == RUNTIME_CASES, oecore
        assert str(LAYER / "lib/oeqa/runtime/cases") in listing["paths"]


def test_runtime_suite_loads_beside_oe_core_suites(oecore_checkouts: list[Path]) -> None:
    """TEST_SUITES = "ping xen": both come from their own layers, nothing else is loaded."""
    for oecore in oecore_checkouts:
        cases = set(list_cases(oecore, "runtime", ["ping", "xen"])["cases"])
        assert RUNTIME_CASES <= cases
        assert {c.split(".")[0] for c in cases} == {"ping", "xen"}, oecore


def test_selftest_module_is_collected(oecore_checkouts: list[Path]) -> None:
    for oecore in oecore_checkouts:
        listing = list_cases(oecore, "selftest", ["xenref_bundling"])
        assert set(listing["cases"]) == SELFTEST_CASES, oecore


def test_a_single_selftest_case_can_be_selected(oecore_checkouts: list[Path]) -> None:
    """oe-selftest -r module.Class.test selects exactly that case."""
    name = "xenref_bundling.XenRefBundlingTests.test_missing_kernel_stops_the_build"
    for oecore in oecore_checkouts:
        assert list_cases(oecore, "selftest", [name])["cases"] == [name]


def test_loader_reports_a_broken_layer_module(oecore_checkouts: list[Path], tmp_path: Path) -> None:
    """The check is real: the same loader fails on a runtime module that does not import."""
    broken = tmp_path / "layer" / "lib" / "oeqa" / "runtime" / "cases"
    broken.mkdir(parents=True)
    (broken / "xenbroken.py").write_text("import no_such_module_for_xen_ref\n")
    command = [sys.executable, str(LIST_CASES), "--oecore", str(oecore_checkouts[0]),
               "--layer", str(tmp_path / "layer"), "runtime", "xenbroken"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 1
    assert "no_such_module_for_xen_ref" in result.stderr
