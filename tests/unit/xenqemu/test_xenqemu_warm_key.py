"""Warm-start snapshot keys, the checksum memo, and the snapshot cache's checks and publication."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from xenqemu import snapshots, warm
from xenqemu.cmdline import RunPaths, build_argv
from xenqemu.target import load_target
from xenqemu.warm import (
    ChecksumMemo,
    SnapshotCache,
    SnapshotError,
    describe_key_change,
    key_argv,
    snapshot_key,
)
from xq_unit_helpers import write

QEMU = {"binary": "/usr/bin/qemu-system-aarch64", "version": "QEMU emulator version 7.2.22", "sha256": "ab" * 32}


@pytest.fixture
def target(oe_deploy: Path):  # type: ignore[no-untyped-def]
    return load_target(oe_deploy / "xen-image-minimal-qemuarm64.rootfs.qemuboot.conf")


def key_of(target, memo: ChecksumMemo, **options: Any):  # type: ignore[no-untyped-def]
    user = options.pop("user", "root")
    qemu = options.pop("qemu", QEMU)
    return snapshot_key(target, key_argv(target, **options), user=user, qemu=qemu, memo=memo)


# ------------------------------------------------------------------------ the keyed command line

def test_key_argv_has_no_per_run_path_and_a_writable_qcow2_drive(target) -> None:  # type: ignore[no-untyped-def]
    argv = key_argv(target)
    text = " ".join(argv)
    assert "/@RUN_DIR@/qmp.sock" in text and "/@OVERLAY@" in text
    assert "-snapshot" not in argv and "snapshot=on" not in text
    drive = argv[argv.index("-drive") + 1]
    assert drive.endswith("format=qcow2") and "format=raw" not in drive and "file=/@OVERLAY@" in drive
    assert "-loadvm" not in argv


def test_session_argv_differs_from_the_key_only_in_per_run_paths(target, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    argv_a = build_argv(target, RunPaths.in_dir(run_a), snapshot=False, rootfs_overlay=run_a / "o.qcow2",
                        loadvm="xenqemu-warm")
    argv_b = build_argv(target, RunPaths.in_dir(run_b), snapshot=False, rootfs_overlay=run_b / "o.qcow2",
                        loadvm="xenqemu-warm")
    normalised = [[a.replace(str(run), "/@RUN_DIR@").replace("/@RUN_DIR@/o.qcow2", "/@OVERLAY@")
                   for a in argv[:-2]] for argv, run in ((argv_a, run_a), (argv_b, run_b))]
    assert normalised[0] == normalised[1] == key_argv(target)
    assert argv_a[-2:] == ["-loadvm", "xenqemu-warm"]


def test_overlay_needs_a_writable_drive(target, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="snapshot=False"):
        build_argv(target, RunPaths.in_dir(tmp_path), snapshot=True, rootfs_overlay=tmp_path / "o.qcow2")
    with pytest.raises(ValueError, match="rootfs_overlay"):
        build_argv(target, RunPaths.in_dir(tmp_path), snapshot=False, loadvm="x")


def test_yaml_target_overlay_drive(tmp_path: Path) -> None:
    for name in ("xen", "Image", "rootfs.ext4"):
        write(tmp_path / name)
    (tmp_path / "t.yaml").write_text("kernel: xen\ndom0:\n  kernel: Image\nrootfs: rootfs.ext4\n")
    argv = key_argv(load_target(tmp_path / "t.yaml"))
    assert "if=none,id=rootfs,file=/@OVERLAY@,format=qcow2" in argv


# ------------------------------------------------------------------------ the key

def test_same_inputs_same_key(target, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    memo = ChecksumMemo(tmp_path / "memo.json")
    first = key_of(target, memo)
    again = key_of(target, ChecksumMemo(None))
    assert first.digest == again.digest and len(first.digest) == 64
    # the dom0 kernel and initrd of a qemuboot.conf are guest-loader options
    assert set(first.inputs["images"]) == {"xen", "rootfs", "kernel:Image", "initrd:initrd.cpio.gz"}


@pytest.mark.parametrize("role", ["xen", "rootfs", "kernel:Image", "initrd:initrd.cpio.gz"])
def test_any_image_content_changes_the_key(target, role: str) -> None:  # type: ignore[no-untyped-def]
    before = key_of(target, ChecksumMemo(None))
    path = Path(before.inputs["images"][role]["path"])
    with open(path, "r+b") as f:  # same size, one byte different
        f.seek(7)
        byte = f.read(1)
        f.seek(7)
        f.write(bytes([byte[0] ^ 0xFF]))
    after = key_of(target, ChecksumMemo(None))
    assert after.digest != before.digest
    assert describe_key_change(before.inputs, after.inputs) == f"image {role} changed"


def test_touching_an_image_without_changing_it_keeps_the_key(target, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    memo = ChecksumMemo(tmp_path / "memo.json")
    before = key_of(target, memo)
    rootfs = Path(before.inputs["images"]["rootfs"]["path"])
    os.utime(rootfs, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert key_of(target, memo).digest == before.digest


@pytest.mark.parametrize("change, reason", [
    ({"qemu": dict(QEMU, version="QEMU emulator version 8.2.2")}, "qemu changed"),
    ({"qemu": dict(QEMU, sha256="cd" * 32)}, "qemu changed"),
    ({"xen_cmdline_extra": "sched=credit"}, "argv changed"),
    ({"extra_args": ["-device", "virtio-rng-device"]}, "argv changed"),
    ({"hostfwd": ["2222:22"]}, "argv changed"),
    ({"qemu_binary": "/opt/qemu/bin/qemu-system-aarch64"}, "argv changed"),
    ({"user": "admin"}, "user changed"),
])
def test_qemu_command_line_and_user_are_in_the_key(target, change: dict[str, Any], reason: str) -> None:  # type: ignore[no-untyped-def]
    memo = ChecksumMemo(None)
    base = key_of(target, memo)
    other = key_of(target, memo, **change)
    assert other.digest != base.digest
    assert describe_key_change(base.inputs, other.inputs) == reason


def test_machine_settings_of_the_target_are_in_the_key(target) -> None:  # type: ignore[no-untyped-def]
    memo = ChecksumMemo(None)
    base = key_of(target, memo)
    assert key_of(dataclasses.replace(target, memory_mib=2048), memo).digest != base.digest
    assert key_of(dataclasses.replace(target, smp_args=["-smp", "2"]), memo).digest != base.digest
    assert key_of(dataclasses.replace(target, kernel_cmdline="dom0_mem=512M"), memo).digest != base.digest


def test_console_protocol_is_in_the_key(target, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    memo = ChecksumMemo(None)
    base = key_of(target, memo)
    monkeypatch.setattr(warm, "helper_script", lambda identity, quiet=True: "__xq_id=" + identity + ";v2")
    assert describe_key_change(base.inputs, key_of(target, memo).inputs) == "console_protocol changed"


# ------------------------------------------------------------------------ the checksum memo

def test_memo_reads_an_unchanged_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = write(tmp_path / "image", b"a" * 5000)
    reads: list[Path] = []
    real = snapshots._hash_file
    monkeypatch.setattr(snapshots, "_hash_file", lambda p: reads.append(p) or real(p))
    memo = ChecksumMemo(tmp_path / "memo.json")
    first = memo.sha256(image)
    memo.save()
    assert ChecksumMemo(tmp_path / "memo.json").sha256(image) == first
    assert len(reads) == 1
    image.write_bytes(b"b" * 5000)
    os.utime(image, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    assert ChecksumMemo(tmp_path / "memo.json").sha256(image) != first
    assert len(reads) == 2


def test_damaged_memo_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "memo.json").write_text("{not json")
    image = write(tmp_path / "image", b"abc")
    assert ChecksumMemo(tmp_path / "memo.json").sha256(image) == \
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


# ------------------------------------------------------------------------ the cache

def fake_save(overlay: Path) -> dict[str, Any]:
    """Stand-in for a booted machine's savevm: a disk-only internal snapshot made by qemu-img."""
    subprocess.run(["qemu-img", "snapshot", "-c", warm.SNAPSHOT_NAME, str(overlay)], check=True)
    return {"identity": "WETXFWGK"}


def built(target, tmp_path: Path):  # type: ignore[no-untyped-def]
    cache = SnapshotCache(tmp_path / "cache")
    key = key_of(target, cache.memo())
    with cache.lock(key):
        snapshot = cache.build(key, target.rootfs, "raw", fake_save)
    return cache, key, snapshot


def test_build_publishes_a_complete_snapshot(target, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rootfs_before = Path(target.rootfs).read_bytes()
    cache, key, snapshot = built(target, tmp_path)
    assert snapshot.directory == cache.path_for(key) and snapshot.identity == "WETXFWGK"
    manifest = json.loads((snapshot.directory / "snapshot.json").read_text())
    assert manifest["key"] == key.digest and manifest["inputs"] == key.inputs
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(snapshot.overlay)],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "qcow2" and info["backing-filename-format"] == "raw"
    assert Path(info["backing-filename"]) == Path(target.rootfs).resolve()
    assert cache.check(key) is not None
    assert not list(cache.directory.glob(".tmp-*"))
    assert Path(target.rootfs).read_bytes() == rootfs_before


def test_failed_build_leaves_nothing(target, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cache = SnapshotCache(tmp_path / "cache")
    key = key_of(target, cache.memo())

    def boot_fails(overlay: Path) -> dict[str, Any]:
        raise SnapshotError("boot failed")

    with pytest.raises(SnapshotError, match="boot failed"):
        cache.build(key, target.rootfs, "raw", boot_fails)
    with pytest.raises(SnapshotError, match="did not record snapshot"):
        cache.build(key, target.rootfs, "raw", lambda overlay: {"identity": "X"})
    assert cache.check(key) is None
    assert [p.name for p in cache.directory.iterdir()] == []


def test_check_rejects_a_truncated_overlay(target, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cache, key, snapshot = built(target, tmp_path)
    with open(snapshot.overlay, "r+b") as f:
        f.truncate(4096)
    with pytest.raises(SnapshotError, match="changed since it was saved"):
        cache.check(key)


def test_check_rejects_an_overlay_rewritten_in_place(target, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cache, key, snapshot = built(target, tmp_path)
    time.sleep(0.01)
    with open(snapshot.overlay, "r+b") as f:
        f.write(b"garbage!")
    with pytest.raises(SnapshotError, match="changed since it was saved"):
        cache.check(key)


def test_check_rejects_a_foreign_or_broken_manifest(target, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cache, key, snapshot = built(target, tmp_path)
    manifest_path = snapshot.directory / "snapshot.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["key"] = "0" * 64
    manifest["inputs"]["qemu"]["version"] = "older"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(SnapshotError, match="qemu changed"):
        cache.check(key)
    manifest_path.write_text("{")
    with pytest.raises(SnapshotError, match="unreadable manifest"):
        cache.check(key)


def test_discard_removes_the_snapshot(target, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cache, key, _snapshot = built(target, tmp_path)
    cache.discard(key)
    assert cache.check(key) is None
    assert not any(p.name.startswith((".trash-", key.short)) and p.is_dir() for p in cache.directory.iterdir())


def test_session_copy_is_independent(target, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cache, key, snapshot = built(target, tmp_path)
    copy = snapshot.copy_overlay(tmp_path / "run" / "session.qcow2")
    with open(copy, "r+b") as f:
        f.seek(0, 2)
        f.write(b"x" * 65536)
    assert cache.check(key) is not None


def test_lock_serialises_builders(target, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cache = SnapshotCache(tmp_path / "cache")
    key = key_of(target, cache.memo())
    events: list[str] = []
    inside = threading.Event()

    def first() -> None:
        with cache.lock(key):
            events.append("first in")
            inside.set()
            time.sleep(1.0)
            events.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    inside.wait(10)
    with cache.lock(key):
        events.append("second in")
    thread.join()
    assert events == ["first in", "first out", "second in"]
