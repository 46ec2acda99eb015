"""xenboot.qemuboot: read like runqemu, write like qemuboot.bbclass, every failure a BootConfigError."""

from __future__ import annotations

import configparser
import os
from pathlib import Path

import pytest
from xenboot import (
    BootConfigError,
    XenHostBoot,
    read_qemuboot,
    render_qemuboot,
    write_qemuboot,
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_render_is_one_section_in_sorted_upper_case_order_lower_case_keys() -> None:
    text = render_qemuboot({"QB_SMP": "-smp 2", "KERNEL_IMAGETYPE": "Image", "KERNEL_IMAGE_NAME": "x",
                            "QB_MEM": "-m 512"})
    lines = text.splitlines()
    assert lines[0] == "[config_bsp]"
    # oe-core sorts the upper-case names ('T' < '_'), configparser lower-cases them
    assert lines[1:5] == ["kernel_imagetype = Image", "kernel_image_name = x", "qb_mem = -m 512", "qb_smp = -smp 2"]


def test_read_back_like_runqemu_paths_and_deploy_dir(tmp_path: Path) -> None:
    conf = write(tmp_path / "deploy" / "x.qemuboot.conf", render_qemuboot({
        "DEPLOY_DIR_IMAGE": ".", "STAGING_BINDIR_NATIVE": "../work/sysroot/usr/bin",
        "QB_MEM": "-m 1024", "QB_DEFAULT_KERNEL": "xen-qemuarm64"}))
    read = read_qemuboot(conf)
    folder = str(tmp_path / "deploy")
    assert read.values["DEPLOY_DIR_IMAGE"] == os.path.realpath(folder) == str(read.deploy_dir)
    assert read.values["STAGING_BINDIR_NATIVE"] == str(tmp_path / "work" / "sysroot" / "usr" / "bin")
    assert read.written["STAGING_BINDIR_NATIVE"] == "../work/sysroot/usr/bin"
    assert read.get("QB_MEM") == "-m 1024" and read.line("QB_MEM") == 4


def test_percent_round_trips_through_runqemus_interpolation(tmp_path: Path) -> None:
    conf = write(tmp_path / "a.qemuboot.conf", render_qemuboot({"QB_OPT_APPEND": "-device x,id=50%"}))
    parser = configparser.ConfigParser()  # runqemu's own reading
    parser.read(conf)
    assert parser.get("config_bsp", "qb_opt_append") == "-device x,id=50%"
    assert read_qemuboot(conf).get("QB_OPT_APPEND") == "-device x,id=50%"


def test_interpolation_is_on_as_in_runqemu(tmp_path: Path) -> None:
    conf = write(tmp_path / "a.qemuboot.conf", "[config_bsp]\nmachine = qemuarm64\nqb_cpu = %(machine)s-cpu\n")
    assert read_qemuboot(conf).get("QB_CPU") == "qemuarm64-cpu"
    write(conf, "[config_bsp]\nmachine = qemuarm64\nqb_cpu = 50%\n")
    with pytest.raises(BootConfigError) as info:
        read_qemuboot(conf)
    assert info.value.key == "QB_CPU" and info.value.line == 3 and "'%%'" in str(info.value)


@pytest.mark.parametrize("values, words", [
    ({"QB_MEM": "-m 1\n024"}, "line break"),
    ({"QB_OPT_APPEND": '-device x,bootargs="a b'}, "balance the quotes"),
    ({"QB_MEM:qemuarm64": "-m 1"}, "not a variable name"),
])
def test_values_runqemu_could_not_read_back_are_refused(values: dict[str, str], words: str) -> None:
    with pytest.raises(BootConfigError, match=words):
        render_qemuboot(values)


@pytest.mark.parametrize("text, words, line", [
    ("qb_mem = 1\n", "MissingSectionHeaderError", 1),
    ("[config_bsp]\nqb_mem = 1\nqb_mem = 2\n", "DuplicateOptionError", 3),
    ("[other]\na = 1\n", "no [config_bsp] section", None),
])
def test_bad_files_name_the_line(tmp_path: Path, text: str, words: str, line: int | None) -> None:
    conf = write(tmp_path / "b.qemuboot.conf", text)
    with pytest.raises(BootConfigError) as info:
        read_qemuboot(conf)
    assert words in str(info.value) and info.value.line == line and str(conf) in str(info.value)


def test_not_utf8_directory_and_missing(tmp_path: Path) -> None:
    binary = tmp_path / "bin.qemuboot.conf"
    binary.write_bytes(b"[config_bsp]\n\x80")
    with pytest.raises(BootConfigError, match=r"not UTF-8 text: byte 0x80 at offset 13") as info:
        read_qemuboot(binary)
    assert info.value.line == 2
    with pytest.raises(BootConfigError, match="is a directory"):
        read_qemuboot(tmp_path)
    with pytest.raises(BootConfigError, match="file not found"):
        read_qemuboot(tmp_path / "missing.qemuboot.conf")


def test_write_is_atomic_and_reads_back_the_host_variables(tmp_path: Path) -> None:
    host = XenHostBoot()
    conf = write_qemuboot(tmp_path / "h.qemuboot.conf", host.variables())
    assert [p.name for p in tmp_path.iterdir()] == ["h.qemuboot.conf"]
    assert read_qemuboot(conf).written == host.variables()
