"""The kas configurations in kas/ are valid for kas's own schema and carry the settings
the layer needs on each release.

Validation goes through kas's own loader (`kas.includehandler.ConfigFile.load`, which
checks every file against the `schema-kas.json` shipped inside the kas package) and its
include resolution (`IncludeHandler.get_config`), so a file that kas would refuse fails
here too. Nothing is cloned: the repositories are only described, not checked out.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import pytest
from kas.context import create_global_context
from kas.includehandler import ConfigFile, IncludeHandler, LoadConfigException

import kas

LAYER_ROOT = Path(__file__).resolve().parents[2]
KAS_DIR = LAYER_ROOT / "kas"
KAS_SCHEMA = Path(kas.__file__).with_name("schema-kas.json")

# release -> bitbake branch, as oe-core's BB_MIN_VERSION requires (see
# /work/shared/tools/README.md: wrynose needs bitbake 2.18, not 2.16).
RELEASES = {
    "scarthgap": "2.8",
    "wrynose": "2.18",
}
META_OE_LAYERS = {"meta-oe", "meta-python", "meta-networking", "meta-filesystems"}
TESTIMAGE_FEATURES = {"allow-empty-password", "empty-root-password", "allow-root-login"}


@pytest.fixture(scope="module", autouse=True)
def kas_global_context(tmp_path_factory: pytest.TempPathFactory) -> None:
    """kas's include handler asks git for the repository root through its global context."""
    work_dir = tmp_path_factory.mktemp("kas-work")
    import os

    os.environ["KAS_WORK_DIR"] = str(work_dir)
    create_global_context(argparse.Namespace(no_color=True))


def merged_config(release: str) -> dict:
    handler = IncludeHandler([str(KAS_DIR / f"qemuarm64-{release}.yml")], use_lock=False)
    config, missing = handler.get_config()
    assert missing == [], f"unresolved includes: {missing}"
    return config


def local_conf(config: dict) -> str:
    return "\n".join(config["local_conf_header"][key] for key in sorted(config["local_conf_header"]))


def test_schema_is_the_one_kas_ships() -> None:
    schema = json.loads(KAS_SCHEMA.read_text())
    assert "repos" in schema["properties"] and "local_conf_header" in schema["properties"]


@pytest.mark.parametrize("path", sorted(KAS_DIR.glob("*.yml")), ids=lambda p: p.name)
def test_every_file_passes_kas_schema_validation(path: Path) -> None:
    loaded = ConfigFile.load(str(path))
    assert loaded.config["header"]["version"] >= 14  # 'branch' needs format 14


def test_there_is_one_file_per_release() -> None:
    names = {p.name for p in KAS_DIR.glob("qemuarm64-*.yml")}
    assert names == {f"qemuarm64-{release}.yml" for release in RELEASES}


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_repositories_follow_the_release_branches(release: str) -> None:
    config = merged_config(release)
    repos = config["repos"]
    assert config["machine"] == "qemuarm64"
    assert repos["meta-xen-ref"] is None, "the layer is the repository holding the kas file"
    assert repos["bitbake"]["branch"] == RELEASES[release]
    for name in ("openembedded-core", "meta-openembedded", "meta-virtualization"):
        assert repos[name]["branch"] == release, name
        assert repos[name]["url"].startswith("https://")
    assert set(repos["meta-openembedded"]["layers"]) == META_OE_LAYERS
    assert set(repos["openembedded-core"]["layers"]) == {"meta"}
    assert repos["bitbake"]["layers"] == {".": "disabled"}
    assert set(config["target"]) == {"xen-image-minimal", "xen-guest-image-minimal"}


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_local_conf_has_xen_systemd_bundling_and_testimage_lines(release: str) -> None:
    text = local_conf(merged_config(release))
    features = re.search(r'^DISTRO_FEATURES:append = "([^"]*)"', text, re.MULTILINE)
    assert features and {"xen", "systemd", "virtualization"} <= set(features.group(1).split())
    assert re.search(r'^INIT_MANAGER = "systemd"', text, re.MULTILINE)
    assert re.search(r'^XEN_GUEST_AUTO_BUNDLE:pn-xen-guest-image-minimal = "1"', text, re.MULTILINE)
    assert re.search(r'^IMAGE_CLASSES \+= "testimage"', text, re.MULTILINE)
    suites = re.search(r'^TEST_SUITES (?:=|:append =) "([^"]*)"', text, re.MULTILINE)
    assert suites and "xen" in suites.group(1).split()
    assert re.search(r'^TEST_RUNQEMUPARAMS = "[^"]*\bslirp\b', text, re.MULTILINE)
    timeout = re.search(r'^TEST_QEMUBOOT_TIMEOUT = "(\d+)"', text, re.MULTILINE)
    assert timeout and int(timeout.group(1)) >= 900, "Xen under TCG needs a long boot timeout"
    memory = re.search(r'^QB_MEM:pn-xen-image-minimal = "-m (\d+)"', text, re.MULTILINE)
    assert memory and int(memory.group(1)) >= 1024
    image_features = re.search(r'^EXTRA_IMAGE_FEATURES:append = "([^"]*)"', text, re.MULTILINE)
    assert image_features and TESTIMAGE_FEATURES <= set(image_features.group(1).split())
    settings = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert not any("debug-tweaks" in line for line in settings), "debug-tweaks is gone after scarthgap"


BROKEN_FILES = {
    "unknown top-level key": "header:\n  version: 14\nmachines: qemuarm64\n",
    "branch given as a list": (
        "header:\n  version: 14\nrepos:\n  bitbake:\n    url: https://example.invalid/b\n"
        "    branch: [scarthgap]\n"
    ),
    "missing header version": "header:\n  includes: []\nmachine: qemuarm64\n",
    "local_conf_header entry not a string": "header:\n  version: 14\nlocal_conf_header:\n  a: [1, 2]\n",
    "format newer than this kas": "header:\n  version: 999\n",
}


@pytest.mark.parametrize("name", sorted(BROKEN_FILES))
def test_broken_file_fails_validation(name: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(BROKEN_FILES[name])
    with pytest.raises(LoadConfigException):
        ConfigFile.load(str(broken))


def test_breaking_a_shipped_file_fails_validation(tmp_path: Path) -> None:
    """The same loader that accepts the shipped file rejects it after a one-word typo."""
    broken = tmp_path / "qemuarm64-wrynose.yml"
    shutil.copy(KAS_DIR / "qemuarm64-wrynose.yml", broken)
    broken.write_text(broken.read_text().replace("local_conf_header:", "local_conf_headers:"))
    ConfigFile.load(str(KAS_DIR / "qemuarm64-wrynose.yml"))
    with pytest.raises(LoadConfigException):
        ConfigFile.load(str(broken))
