"""Warm start against a real Xen host in QEMU: build, restore, key change, damage, parallel runs.

Needs a target (``--xenqemu-target PATH`` or ``XENQEMU_TARGET``; for the reference target the
``qemuboot.conf`` that ``xen-ref-target build`` writes); without one these tests fail saying so.
Every test uses its own snapshot cache under pytest's tmp_path, never the user's cache.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from xenqemu import (
    QemuMachine,
    SnapshotCache,
    Target,
    WarmStartWarning,
    Xl,
    load_target,
)
from xenqemu.boot import BootTimeouts
from xenqemu.warm import image_files
from xenreftarget.packages import sha256_file

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


@pytest.fixture(scope="module")
def target(request: pytest.FixtureRequest) -> Target:
    path = request.config.getoption("--xenqemu-target")
    if not path:
        pytest.fail("warm-start tests need a target: pass --xenqemu-target PATH (a qemuboot.conf or "
                    "YAML target) or set XENQEMU_TARGET", pytrace=False)
    return load_target(path)


@pytest.fixture(scope="module")
def base_checksums(target: Target) -> dict[str, str]:
    """Checksums of the target's images before any warm-start test ran."""
    return {str(p): sha256_file(p) for p in image_files(target).values()}


def machine(target: Target, cache: Path, tmp_path: Path, warnings_seen: list[str] | None = None,
            **options) -> QemuMachine:  # type: ignore[no-untyped-def]
    warn = (lambda message: warnings_seen.append(message)) if warnings_seen is not None else None
    return QemuMachine(target, warm=True, snapshot_cache=cache, base_dir=tmp_path / "runs",
                       timeouts=BootTimeouts().scaled(float(os.environ.get("XENQEMU_TIMEOUT_SCALE", "1"))),
                       warn=warn, **options)


def snapshot_dirs(cache: Path) -> list[Path]:
    return sorted(p for p in cache.iterdir() if p.is_dir() and not p.name.startswith("."))


@pytest.fixture(scope="module")
def built_cache(target: Target, base_checksums: dict[str, str],
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, object]]]:
    """A cache holding the snapshot of ``target``, built by the first warm session."""
    tmp = tmp_path_factory.mktemp("warm")
    cache = tmp / "cache"
    seen: list[str] = []
    with machine(target, cache, tmp, seen) as first:
        console = first.boot()
        facts = {"warm_result": first.warm_result, "phases": [p.name for p in first.phases],
                 "xl": Xl(console).list(), "warnings": seen, "run_dir": first.run_dir,
                 "host_time": time.time(), "dom0_time": int(console.run("date +%s", check=True).output)}
    yield cache, facts


def test_first_warm_session_builds_then_restores(built_cache) -> None:  # type: ignore[no-untyped-def]
    cache, facts = built_cache
    assert facts["warm_result"] == "built+restored"
    assert facts["warnings"] == []
    assert facts["phases"] == ["restore", "shell"]
    assert facts["xl"][0].name == "Domain-0"
    [snapshot] = snapshot_dirs(cache)
    manifest = json.loads((snapshot / "snapshot.json").read_text())
    assert manifest["boot_phases"]["shell"] > 0 and manifest["identity"]
    assert (Path(facts["run_dir"]) / "snapshot-build" / "serial.log").stat().st_size > 0
    assert not list(cache.glob(".tmp-*"))


def test_restored_session_works_and_its_clock_is_now(target: Target, built_cache, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cache, facts = built_cache
    [snapshot] = snapshot_dirs(cache)
    overlay = snapshot / "rootfs-overlay.qcow2"
    stamp = (overlay.stat().st_size, overlay.stat().st_mtime_ns)
    seen: list[str] = []
    with machine(target, cache, tmp_path, seen) as session:
        console = session.boot()
        assert session.warm_result == "restored" and seen == []
        assert [p.name for p in session.phases] == ["restore", "shell"]
        before = time.time()
        dom0_now = int(console.run("date +%s", check=True).output)
        assert before - 5 <= dom0_now <= time.time() + 5, "dom0's clock was not set after the restore"
        # the snapshot holds the domains running when it was saved (autostart, dom0less), no others
        domains = Xl(console).list()
        assert [d.name for d in domains] == [d.name for d in facts["xl"]]
        assert console.run("cd /tmp && echo state > warm-file && cat warm-file").output == "state\n"
        assert console.run("(exit 7)").status == 7
        # dom0's DHCP runs in the background: the snapshot may have been saved before the lease
        address = console.run("i=0; until ip -4 -o addr show dev xenbr0 | grep -q inet || [ $i -ge 60 ]; "
                              "do sleep 1; i=$((i + 1)); done; ip -4 -o addr show dev xenbr0", check=True)
        assert "10.0.2.15" in address.output
        # the toolstack daemons came back with the VM state
        assert console.run("xenstore-read domid", check=True).output.strip() == "0"
        assert console.run("pidof xenconsoled xenstored", check=True).output.strip()
        session_overlay = session.run_dir / "rootfs-session.qcow2"
        assert session_overlay.exists()
    assert session.process is not None and session.process.returncode == 0
    assert not session_overlay.exists(), "the session's overlay copy must be deleted at the end"
    assert (overlay.stat().st_size, overlay.stat().st_mtime_ns) == stamp, "a session changed the cache"


def test_guest_created_after_restore_gets_dhcp_reaches_the_host_and_has_the_time(
        target: Target, built_cache, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cache, _ = built_cache
    token = uuid.uuid4().hex
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "token.txt").write_text(token + "\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with machine(target, cache, tmp_path) as session:
            console = session.boot()
            xl = Xl(console)
            config, name = xl.idle_configs()[0]
            with xl.create(config, console=True) as guest:
                address = ""
                for _ in range(60):  # the guest retries DHCP in the background
                    address = guest.run("ip -4 -o addr show dev eth0", timeout=60).output
                    if "inet 10.0.2." in address:
                        break
                    time.sleep(2)
                assert "inet 10.0.2." in address, address
                fetched = guest.run(f"wget -q -O - http://10.0.2.2:{server.server_address[1]}/token.txt",
                                    timeout=120)
                assert fetched.output.strip() == token
                guest_now = int(guest.run("date +%s", check=True).output)
                # the guest read Xen's wallclock at boot, which dom0's clock setting updated
                assert abs(guest_now - time.time()) < 60, f"guest clock {guest_now} vs host {time.time():.0f}"
            xl.destroy(name)
    finally:
        server.shutdown()
        server.server_close()


def test_key_change_builds_a_second_snapshot(target: Target, built_cache, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cache, _ = built_cache
    work = tmp_path / "cache"
    shutil.copytree(cache, work)
    before = snapshot_dirs(work)
    seen: list[str] = []
    # a different Xen command line is a different QEMU command line: a new key
    with machine(target, work, tmp_path, seen, xen_cmdline_extra="sched=credit2") as session:
        console = session.boot()
        assert session.warm_result == "built+restored"
        assert "sched=credit2" in console.run("xl info | grep xen_commandline", check=True).output
    assert seen == [], "a new key is not an error"
    after = snapshot_dirs(work)
    assert len(after) == 2 and set(before) < set(after)
    with machine(target, work, tmp_path, seen) as session:  # the old key still restores
        session.boot()
        assert session.warm_result == "restored"


def test_truncated_snapshot_warns_and_boots_cold_to_rebuild(target: Target, built_cache, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cache, _ = built_cache
    work = tmp_path / "cache"
    shutil.copytree(cache, work)
    [snapshot] = snapshot_dirs(work)
    with open(snapshot / "rootfs-overlay.qcow2", "r+b") as f:
        f.truncate(1 << 20)
    seen: list[str] = []
    with machine(target, work, tmp_path, seen) as session:
        console = session.boot()
        assert console.run("xl list", check=True).output.startswith("Name")
        assert session.warm_result == "built+restored"
    assert len(seen) == 1 and "unusable snapshot" in seen[0] and "changed since it was saved" in seen[0]
    assert "booting cold" in seen[0]
    assert SnapshotCache(work).directory == work and len(snapshot_dirs(work)) == 1
    assert (snapshot / "rootfs-overlay.qcow2").stat().st_size > 1 << 20, "the snapshot was not rebuilt"


def test_snapshot_qemu_cannot_load_warns_and_boots_cold(target: Target, built_cache, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cache, _ = built_cache
    work = tmp_path / "cache"
    shutil.copytree(cache, work)
    [snapshot] = snapshot_dirs(work)
    overlay = snapshot / "rootfs-overlay.qcow2"
    st = overlay.stat()
    with open(overlay, "r+b") as f:  # damage the qcow2 header; size and time stay as recorded
        f.write(b"\0" * 512)
    os.utime(overlay, ns=(st.st_atime_ns, st.st_mtime_ns))
    session = machine(target, work, tmp_path)
    with contextlib.ExitStack() as stop:
        stop.callback(session.stop)
        with pytest.warns(WarmStartWarning, match="QEMU could not restore the snapshot"):
            session.start()  # the restore fails at start-up; the session starts again, cold
        console = session.boot()
        assert session.warm_result == "cold"
        assert [p.name for p in session.phases] == ["xen_banner", "dom0_handover", "dom0_kernel",
                                                    "login_prompt", "shell"]
        assert Xl(console).list()[0].name == "Domain-0"
    assert (session.run_dir / "warm-attempt" / "qemu-stderr.log").read_text().strip()
    assert snapshot_dirs(work) == [], "the damaged snapshot must be discarded"


def test_two_warm_sessions_at_once(target: Target, built_cache, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cache, _ = built_cache
    sessions = [machine(target, cache, tmp_path) for _ in range(2)]
    results: dict[int, object] = {}

    def work(index: int) -> None:
        try:
            session = sessions[index]
            session.start()
            console = session.boot()
            console.run(f"echo session-{index} > /root/who", check=True)
            outputs = [console.run(f"cat /root/who; echo {n}", check=True).output for n in range(5)]
            results[index] = (session.warm_result, outputs, Xl(console).list()[0].name)
        except BaseException as err:  # noqa: BLE001  (any failure is reported by the main thread)
            results[index] = err

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(900)
    finally:
        codes = [s.stop() for s in sessions]
    for index in range(2):
        assert not isinstance(results.get(index), BaseException), results.get(index)
        warm_result, outputs, dom0 = results[index]  # type: ignore[misc]
        assert warm_result == "restored" and dom0 == "Domain-0"
        assert outputs == [f"session-{index}\n{n}\n" for n in range(5)], "the sessions share a disk"
    assert codes == [0, 0]
    run_dirs = {s.run_dir for s in sessions}
    sockets = {s.paths.qmp_socket for s in sessions} | {s.paths.serial_socket for s in sessions}
    assert len(run_dirs) == 2 and len(sockets) == 4
    assert all(s.process is not None and s.process.poll() is not None for s in sessions)


XDIST_TEST = """
import json, os, time

def test_worker_session(xen_host):
    worker = os.environ["PYTEST_XDIST_WORKER"]
    xen_host.run(f"echo {worker} > /root/worker")
    seen = [xen_host.run("cat /root/worker").output.strip() for _ in range(3)]
    record = {"worker": worker, "run_dir": str(xen_host.run_dir), "warm": xen_host.machine.warm_result,
              "seen": seen, "dom0": xen_host.xl.list()[0].name,
              "qmp": str(xen_host.machine.paths.qmp_socket), "start": time.time()}
    with open(os.path.join(os.environ["XQ_OUT"], worker + ".json"), "w") as f:
        json.dump(record, f)
"""


def test_pytest_xdist_workers_each_start_warm(target: Target, built_cache, tmp_path: Path,
                                               pytester: pytest.Pytester) -> None:  # type: ignore[no-untyped-def]
    cache, _ = built_cache
    out = tmp_path / "out"
    out.mkdir()
    pytester.makepyfile(test_xdist_warm=XDIST_TEST)
    os.environ["XQ_OUT"] = str(out)
    try:
        result = pytester.runpytest_subprocess(
            "-n", "2", "--dist", "each", "-p", "no:cacheprovider", "--xenqemu-target", str(target.source),
            "--xenqemu-warm", "--xenqemu-snapshot-cache", str(cache), "--xenqemu-run-dir", str(tmp_path / "runs"),
            timeout=1800)
    finally:
        del os.environ["XQ_OUT"]
    assert result.ret == 0, result.stdout.str()[-3000:]
    records = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    assert [r["worker"] for r in records] == ["gw0", "gw1"]
    for record in records:
        assert record["warm"] == "restored" and record["dom0"] == "Domain-0"
        assert record["seen"] == [record["worker"]] * 3
    assert len({r["run_dir"] for r in records}) == 2 and len({r["qmp"] for r in records}) == 2


def test_base_images_unchanged(target: Target, base_checksums: dict[str, str], built_cache) -> None:  # type: ignore[no-untyped-def]
    assert {str(p): sha256_file(p) for p in image_files(target).values()} == base_checksums
    assert len(base_checksums) >= 4  # Xen, dom0 kernel, initrd, rootfs
