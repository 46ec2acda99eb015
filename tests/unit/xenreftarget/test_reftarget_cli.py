"""The Debian release choice on the command lines: ``xen-ref-target --debian`` and ``run-lifecycle --debian``."""

import json
import subprocess
from pathlib import Path

import pytest
from xenreftarget import cli, stamp

REPO = Path(__file__).resolve().parents[3]


def _published(cache: Path, home: str, suite: str, xen: str) -> None:
    deploy = cache / home / "builds" / "b1"
    deploy.mkdir(parents=True)
    stamp.write_manifest(deploy, {"distro": {"suite": suite, "arch": "arm64", "xen": xen},
                                  "guests": [{"name": "g1"}], "timings_s": {"total": 1.0}})
    (cache / home / "target").symlink_to("builds/b1")


def test_show_reads_the_chosen_suites_target(tmp_path, capsys):
    _published(tmp_path, ".", "bookworm", "4.17")
    _published(tmp_path, "trixie-arm64", "trixie", "4.20")
    assert cli.main(["show", "--cache", str(tmp_path), "--debian", "trixie"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["distro"]["xen"] == "4.20"
    assert shown["qemuboot_conf"].startswith(str(tmp_path / "trixie-arm64" / "target"))
    assert cli.main(["show", "--cache", str(tmp_path)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["distro"]["xen"] == "4.17"
    assert shown["poweroff_ends_qemu"] is True, "a manifest from before the field: the check stays on"


def test_show_without_a_trixie_build_says_how_to_make_one(tmp_path, capsys):
    _published(tmp_path, ".", "bookworm", "4.17")
    assert cli.main(["show", "--cache", str(tmp_path), "--debian", "trixie"]) == 1
    assert "run 'xen-ref-target build --debian trixie'" in capsys.readouterr().err


def test_an_unknown_suite_is_a_usage_error_and_help_names_each_xen(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["build", "--cache", str(tmp_path), "--debian", "forky"])
    assert exited.value.code == 2
    assert "invalid choice: 'forky'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["build", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "bookworm (Xen 4.17), trixie (Xen 4.20); default bookworm" in text


def test_run_lifecycle_refuses_a_debian_flag_without_a_suite():
    result = subprocess.run([str(REPO / "scripts/run-lifecycle"), "--timeout-scale", "3", "--debian"],
                            capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 2
    assert "--debian needs a suite (bookworm or trixie)" in result.stderr
