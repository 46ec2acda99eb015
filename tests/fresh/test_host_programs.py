"""Every program the code runs on the host comes from a package scripts/setup-host installs.

The programs are found in the code (``hostprograms.scan_tree``: launch calls in Python, command
words in the shell entry points), not listed by hand; each is looked up with dpkg on this machine
(``hostpackages``: a program's package must be in scripts/setup-host.packages, depend from one, or
belong to a minimal Debian 12). The first tests are the check itself; the rest pin the scan down on
small fake trees, so that a scan that stopped seeing programs would fail here.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import hostpackages
import pytest
from hostpackages import Verdict, classify, host_program_problems, installed_packages
from hostprograms import ScanResult, scan_shell, scan_tree

REPO = Path(__file__).resolve().parents[2]

#: Launches whose program is computed at run time (the scan reports them as unresolved), keyed by
#: (path, function): the program each runs (None: none, it only looks programs up), and why.
DYNAMIC_LAUNCHES: dict[tuple[str, str], tuple[str | tuple[str, ...] | None, str]] = {
    ("lib/xenqemu/machine.py", "QemuMachine._spawn_qemu"):
        ("qemu-system-aarch64", "the target's QEMU: QB_SYSTEM_NAME, default Target.qemu_binary"),
    ("lib/xenqemu/warm.py", "WarmStart._key"):
        ("qemu-system-aarch64", "the target's QEMU, looked up for the warm-start snapshot key"),
    ("lib/xenqemu/snapshots.py", "qemu_version"):
        ("qemu-system-aarch64", "the target's QEMU, asked for its version for the snapshot key"),
    ("bench/bench_boot.py", "time_baseline"):
        ("qemu-system-aarch64", "the harness's QEMU argv (xenqemu.cmdline.build_argv)"),
    ("lib/xenbundle/imports.py", "_run"):
        (("debugfs", "mkfs.ext4", "qemu-img"), "the tools of a disk import, found on PATH (ImportTools)"),
    ("scripts/oe/oeglue.py", "use_layer_python"):
        (None, "re-runs the script with the layer's venv python (made by setup-host)"),
    ("lib/xenqemu/poweroff.py", "writable_overlay"):
        ("qemu-img", "imageread.tool('qemu-img'): the writable overlay of a poweroff run"),
    ("lib/xenreftarget/apt.py", "_run"):
        (("apt-get", "apt-cache"), "apt with the private state's options (PrivateApt._apt)"),
    ("lib/xenqemu/imageread.py", "_run"):
        (("debugfs", "dumpe2fs", "qemu-img"), "the tool found by imageread.tool(name, package)"),
    ("tests/unit/xenbundle/test_imports.py", "inode"): ("debugfs", "TOOLS.debugfs"),
    ("tests/unit/xenbundle/test_imports.py", "listing"): ("debugfs", "TOOLS.debugfs"),
    ("tests/unit/xenbundle/test_imports.py", "fsck_clean"): ("e2fsck", "tool('e2fsck')"),
    ("tests/unit/xenbundle/test_imports.py", "test_archive_keeps_owners_modes_links_and_devices"):
        ("debugfs", "TOOLS.debugfs"),
    ("tests/unit/xenbundle/test_imports.py", "qemu_img"): ("qemu-img", "TOOLS.qemu_img"),
    ("tests/unit/xenbundle/test_imports.py", "test_raw_and_ext4_are_copied_sparse"):
        ("mkfs.ext4", "TOOLS.mkfs_ext4"),
    ("tests/unit/xenqemu/test_xenqemu_imageread.py",
     "test_a_file_is_read_through_a_qcow2_overlay_with_its_changes"): ("qemu-img", "imageread.tool('qemu-img')"),
    ("bench/bench_dom0less.py", "one_boot"):
        ("qemu-system-aarch64", "the harness's QEMU argv (xenqemu.cmdline.build_argv, via bench_boot.baseline_argv)"),
    ("bench/bench_dom0less.py", "no_dom0_boot"):
        ("qemu-system-aarch64", "the harness's QEMU argv (xenqemu.cmdline.build_argv, via bench_boot.baseline_argv)"),
    ("lib/xenboot/devicetree.py", "_run"):
        ("qemu-system-aarch64", ("dump_machine_dtb's QEMU (the target's QB_SYSTEM_NAME in its qemu_bindir); "
                                "dtc is named literally")),
    ("tests/e2e/test_dom0less_only.py", "test_xen_without_dom0_starts_the_guest_whose_console_answers"):
        ("qemu-system-aarch64", "the no-dom0 target's QEMU argv (xenqemu.cmdline.build_argv)"),
    ("tests/fresh/hostpackages.py", "locate"):
        (None, "this check's own shutil.which of every program the scan found"),
    ("scripts/check-fresh-machine", "in_namespace"):
        (None, "the steps run in the fresh tree: the repository's own scripts (check())"),
}

#: Programs the code runs that deliberately do not come from a Debian package.
NOT_FROM_DEBIAN = {
    "sudo": "setup-host runs it only when not root (README: as root, or a user with sudo)",
    "runqemu": "oe-core's, from an openembedded-core checkout (XEN_REF_OECORE); its tests are marked oecore",
    "bitbake": "BitBake's own, from the bitbake checkout next to openembedded-core (scripts/oe/)",
}


@pytest.fixture(scope="module")
def repo_scan() -> ScanResult:
    return scan_tree(REPO)


def test_every_host_program_comes_from_setup_host_or_a_minimal_debian(repo_scan: ScanResult) -> None:
    packages = installed_packages()
    assert "dpkg" in packages, "dpkg-query listed no packages: this check needs a Debian machine"
    setup = hostpackages.closure(hostpackages.setup_host_packages(REPO), packages)
    minimal = hostpackages.minimal_debian(packages)
    venv_bin = Path(sys.executable).parent

    def verdict_of(program: str) -> Verdict:
        return classify(program, setup, minimal, venv_bin)

    problems = host_program_problems(repo_scan, DYNAMIC_LAUNCHES, NOT_FROM_DEBIAN, verdict_of)
    assert not problems, "host programs without a package in scripts/setup-host:\n" + "\n".join(problems)


def test_the_qemu_of_every_reference_architecture_comes_from_setup_host() -> None:
    """The launches above are declared with arm64's QEMU; the amd64 target's QB_SYSTEM_NAME names
    qemu-system-x86_64, which the same launches run: each architecture's QEMU must be installed too."""
    from xenreftarget.packages import QEMU_BY_ARCH

    packages = installed_packages()
    setup = hostpackages.closure(hostpackages.setup_host_packages(REPO), packages)
    minimal = hostpackages.minimal_debian(packages)
    for arch, (program, package) in QEMU_BY_ARCH.items():
        assert package in hostpackages.setup_host_packages(REPO), f"{arch}: {package} not in setup-host.packages"
        verdict = classify(program, setup, minimal, Path(sys.executable).parent)
        assert verdict.source == "setup-host", f"{arch}: {program}: {verdict}"


def test_the_scan_sees_the_programs_the_harness_tests_and_the_builder_run(repo_scan: ScanResult) -> None:
    """The programs the last fresh machine lacked, or that the builder needs, are found in the code."""
    programs = repo_scan.programs()
    for program in ("busybox", "bash", "qemu-img", "mkfs.ext4", "dpkg-deb", "apt-get", "depmod",
                    "modprobe", "cpio", "git", "mmdebstrap", "unshare"):
        assert program in programs, f"the scan no longer finds {program}"
    busybox = {use.named_at.split(":")[0] for use in programs["busybox"]}
    assert "tests/harness/xq_harness_helpers.py" in busybox


def test_setup_host_package_list_is_clean() -> None:
    names = hostpackages.setup_host_packages(REPO)
    assert len(names) == len(set(names)), "a package is listed twice"
    assert "busybox" in names and "mmdebstrap" in names
    for name in names:
        assert hostpackages.re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", name), f"not a Debian package name: {name!r}"


# -- the scan on fake trees ------------------------------------------------------------------------


def write(root: Path, relative: str, text: str, mode: int = 0o644) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    path.chmod(mode)
    return path


def places(scan: ScanResult, program: str) -> set[str]:
    return {use.where() for use in scan.programs().get(program, [])}


def test_a_new_program_in_a_fake_tree_fails_the_check(tmp_path: Path) -> None:
    write(tmp_path, "lib/tool/run.py", """
        import subprocess

        def build():
            subprocess.run(["cp", "a", "b"], check=True)
            subprocess.run(["frobnicate", "--all"], check=True)
        """)
    scan = scan_tree(tmp_path)
    verdicts = {
        "cp": Verdict("cp", "/usr/bin/cp", ("coreutils",), "minimal Debian"),
        "frobnicate": Verdict("frobnicate", "/usr/bin/frobnicate", ("frob-tools",), ""),
    }
    problems = host_program_problems(scan, {}, {}, verdicts.__getitem__)
    assert problems == [(
        "frobnicate (run at lib/tool/run.py:5) comes from the Debian package frob-tools, which "
        "scripts/setup-host does not install and a minimal Debian 12 lacks: add frob-tools to "
        "scripts/setup-host.packages")]


def test_a_program_missing_from_the_machine_is_named_with_the_way_to_find_its_package(tmp_path: Path) -> None:
    write(tmp_path, "tests/test_x.py", "import shutil\nHAVE = shutil.which('dtc')\n")
    verdict = Verdict("dtc", None, (), "")
    problems = host_program_problems(scan_tree(tmp_path), {}, {}, lambda program: verdict)
    assert problems == [("dtc (run at tests/test_x.py:2) is not installed on this machine: run scripts/setup-host; "
                         "if it is still missing, find its Debian package (apt-file search --regexp 'bin/dtc$') "
                         "and add it to scripts/setup-host.packages")]


def test_a_shell_list_constant_in_another_module_reaches_the_fixture_that_starts_it(tmp_path: Path) -> None:
    """The busybox case: a dict of argvs, a pytest fixture returning a starter, a ``--`` wrapper."""
    write(tmp_path, "tests/h/helpers_mod.py", """
        SHELLS = {
            "bash": ["bash", "-i"],
            "ash": ["busybox", "sh", "-i"],
        }
        """)
    write(tmp_path, "tests/h/conftest.py", """
        import sys
        import pexpect
        import pytest
        from helpers_mod import SHELLS

        @pytest.fixture
        def spawn_wrapped():
            def start(shell, seed=1):
                args = ["relay.py", "--seed", str(seed)]
                return pexpect.spawn(sys.executable, args + ["--"] + shell)
            yield start
        """)
    write(tmp_path, "tests/h/test_shells.py", """
        from helpers_mod import SHELLS

        def test_it(spawn_wrapped):
            spawn_wrapped(SHELLS["ash"])
        """)
    scan = scan_tree(tmp_path)
    assert places(scan, "busybox") == {"tests/h/conftest.py:10 (named at tests/h/helpers_mod.py:3)"}
    assert places(scan, "bash") == {"tests/h/conftest.py:10 (named at tests/h/helpers_mod.py:2)"}
    assert set(scan.programs()) == {"bash", "busybox"}  # relay.py and --seed are arguments
    assert scan.unresolved == []


def test_programs_passed_through_helpers_aliases_and_loops(tmp_path: Path) -> None:
    write(tmp_path, "lib/pkg/apt.py", """
        import os
        import shutil
        import subprocess

        def _run(cmd, **kwargs):
            return subprocess.run(list(cmd), capture_output=True, **kwargs)

        class Apt:
            def __init__(self, run=_run):
                self._run = run

            def _check(self, cmd):
                return self._run(cmd)

            def update(self):
                self._check(["apt-get", "update"])

        def extract(deb, run=_run):
            run(["dpkg-deb", "-x", deb, "/tmp/x"])

        def facts(qemu="qemu-system-aarch64"):
            return subprocess.run([qemu, "--version"])

        def image(tree):
            mkfs = shutil.which("mkfs.ext4") or "/usr/sbin/mkfs.ext4"
            _run([mkfs, "-d", tree])
            for shell in ("sh", "busybox"):
                if shutil.which(shell):
                    subprocess.run([shell, "-n", "x"] if shell != "busybox" else [shell, "sh", "-n", "x"])
            os.execvp("runuser", ["runuser", "-u", "b", "--", "bash", "-c", "true"])
            for program, package in (("git", "git"), ("tar", "tar")):
                shutil.which(program)
        """)
    scan = scan_tree(tmp_path)
    assert set(scan.programs()) == {"apt-get", "dpkg-deb", "qemu-system-aarch64", "mkfs.ext4", "sh",
                                    "busybox", "runuser", "bash", "git", "tar"}
    assert places(scan, "apt-get") == {"lib/pkg/apt.py:6 (named at lib/pkg/apt.py:16)"}
    assert scan.unresolved == []


def test_runuser_wrapped_command_and_command_strings_are_found(tmp_path: Path) -> None:
    write(tmp_path, "scripts/tool.py", """
        import os
        import subprocess
        subprocess.call(["runuser", "-u", "builder", "--", "bash", "-c", "ls"])
        os.system(f"mkfs.vfat -n {label} image")
        subprocess.run(f"/usr/bin/{tool} --version", shell=True)
        """)
    scan = scan_tree(tmp_path)
    assert set(scan.programs()) == {"runuser", "bash", "mkfs.vfat"}
    assert [(u.line, u.expression.split(" (")[0]) for u in scan.unresolved] == [
        (5, "f'/usr/bin/{tool} --version'")]


def test_console_commands_the_venv_and_the_repository_files_are_not_host_programs(tmp_path: Path) -> None:
    write(tmp_path, "tests/test_guest.py", """
        import subprocess
        import sys
        from pathlib import Path

        TOOL = Path(sys.executable).with_name("oelint-adv")

        REPO = Path(__file__).resolve().parents[1]

        def test_guest(xen_host, channel):
            subprocess.run([REPO / "scripts" / "check"])
            xen_host.run("xl list")
            channel.start("ip link set eth0 up")
            subprocess.run([sys.executable, "-m", "pytest"])
            subprocess.run([str(TOOL), "--quiet"])
        """)
    scan = scan_tree(tmp_path)
    assert scan.programs() == {} and scan.unresolved == []


def test_a_computed_launch_is_reported_with_its_function_until_declared(tmp_path: Path) -> None:
    write(tmp_path, "lib/m/machine.py", """
        import subprocess

        class Machine:
            def start(self):
                self.process = subprocess.Popen(build_argv(self.target))
        """)
    scan = scan_tree(tmp_path)
    assert [(u.path, u.line, u.function) for u in scan.unresolved] == [("lib/m/machine.py", 5, "Machine.start")]
    undeclared = host_program_problems(scan, {}, {}, lambda p: Verdict(p, "/x", ("x",), "setup-host"))
    assert len(undeclared) == 1 and "lib/m/machine.py:5 (Machine.start)" in undeclared[0]
    assert "DYNAMIC_LAUNCHES" in undeclared[0]
    declared = {("lib/m/machine.py", "Machine.start"): ("qemu-system-x86_64", "the target's QEMU")}
    asked = []
    missing = host_program_problems(scan, declared, {}, lambda p: asked.append(p) or Verdict(p, None, (), ""))
    assert asked == ["qemu-system-x86_64"]
    assert missing and missing[0].startswith("qemu-system-x86_64 (run at lib/m/machine.py:5)")
    stale = host_program_problems(ScanResult(), declared, {}, lambda p: Verdict(p, "/x", ("x",), "setup-host"))
    assert stale and "no longer finds" in stale[0]


def test_shell_scripts_command_words(tmp_path: Path) -> None:
    script = textwrap.dedent("""\
        #!/usr/bin/env bash
        # mkfs.btrfs in a comment is not a command
        set -euo pipefail
        repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
        packages=(
            qemu-utils   # an array element is not a command
            cpio
        )
        missing+=("$pkg")
        as_root() {
            if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
        }
        helper() { echo "no program here"; }
        if ! dpkg --print-foreign-architectures | grep -qx arm64; then
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y x >/dev/null 2>&1
        fi
        helper
        for pair in a:1 b:2; do
            release=${pair%%:*} branch=${pair#*:}
            git clone -q --branch "$release" "file://x" "$HOME/$branch"
        done
        case "$1" in
            start|stop) systemctl "$1" x ;;
            *) logger "unknown" ;;
        esac
        cat <<EOF >"$repo/out"
        tar this line is data
        EOF
        conf=$("$repo/.venv/bin/tool" show |
            "$repo/.venv/bin/python" -c 'import json; print(json.load(sys.stdin)["x"])')
        mapfile -t names < <(sed -e 's/#.*//' "$repo/list")
        timeout 5 unshare --mount -- chroot /tree /bin/true
        exec "$repo/scripts/run-tests" "$@"
        $tool --version
        """)
    uses, unresolved = scan_shell(script, "scripts/x")
    found = {(u.program, u.run_at) for u in uses}
    assert found == {
        ("dirname", "scripts/x:4"), ("id", "scripts/x:11"), ("sudo", "scripts/x:11"),
        ("dpkg", "scripts/x:14"), ("grep", "scripts/x:14"), ("env", "scripts/x:15"),
        ("apt-get", "scripts/x:15"), ("git", "scripts/x:20"), ("systemctl", "scripts/x:23"),
        ("logger", "scripts/x:24"), ("cat", "scripts/x:26"), ("sed", "scripts/x:31"),
        ("timeout", "scripts/x:32"), ("unshare", "scripts/x:32"), ("chroot", "scripts/x:32"),
        ("true", "scripts/x:32")}
    assert [(u.line, u.expression) for u in unresolved] == [(34, "$tool (a variable as the command)")]


def test_the_real_entry_points_are_scanned(repo_scan: ScanResult) -> None:
    runs = {use.run_at.split(":")[0] for use in repo_scan.uses}
    for script in ("scripts/setup-host", ".ci/run", "scripts/check-fresh-machine"):
        assert script in runs, f"no program found in {script}"
