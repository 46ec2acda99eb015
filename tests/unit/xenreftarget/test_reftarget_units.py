"""dom0's systemd configuration: unit texts, enablement links, accounts, the xendomains script."""

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
from xenreftarget import dom0, units
from xenreftarget.packages import Distro

XEN_BIN = Distro().xen_bin_dir


def _keys(text: str, section: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for key, value in units.parse_unit(text)[section]:
        found.setdefault(key, []).append(value)
    return found


def _words(values: list[str]) -> list[str]:
    return [w for v in values for w in v.split()]


def test_unit_sections_are_parsed_without_comments():
    text = "# c\n[Unit]\nDescription=x y\n; c\nAfter=a.service\nAfter=b.service\n\n[Install]\nWantedBy=m.target\n"
    assert units.parse_unit(text) == {"Unit": [("Description", "x y"), ("After", "a.service"),
                                               ("After", "b.service")],
                                      "Install": [("WantedBy", "m.target")]}


def test_xenstored_needs_xenfs_and_is_ready_only_when_it_answers():
    unit = _keys(units.xenstored_service(XEN_BIN), "Unit")
    service = _keys(units.xenstored_service(XEN_BIN), "Service")
    assert unit["Requires"] == ["proc-xen.mount"] and "proc-xen.mount" in _words(unit["After"])
    assert service["ExecStart"][0].startswith(f"{XEN_BIN}/xenstored --no-fork ")
    assert service["ExecStartPost"] == [f"{units.XENSTORE_READY} 30"]
    assert "XENSTORED_ROOTDIR=/run/xenstored" in service["Environment"]


def test_toolstack_order_is_xenstored_init_dom0_xenconsoled():
    init = _keys(units.xen_init_dom0_service(XEN_BIN), "Unit")
    consoled = _keys(units.xenconsoled_service(XEN_BIN), "Unit")
    assert init["After"] == ["xenstored.service"]
    assert _words(consoled["After"]) == ["xenstored.service", "xen-init-dom0.service"]
    assert " -i " in _keys(units.xenconsoled_service(XEN_BIN), "Service")["ExecStart"][0]


def test_xendomains_starts_after_the_toolstack_and_bridge_and_is_bounded_at_stop():
    text = units.xendomains_service(120)
    unit, service = _keys(text, "Unit"), _keys(text, "Service")
    after = _words(unit["After"])
    for needed in ("xenstored.service", "xen-init-dom0.service", "xenconsoled.service",
                   "sys-subsystem-net-devices-xenbr0.device", "systemd-networkd.service"):
        assert needed in after
    assert unit["Wants"] == ["sys-subsystem-net-devices-xenbr0.device"]
    assert service["ExecStart"] == [f"-{units.XENDOMAINS} start"]   # a failed guest keeps stop
    assert service["ExecStop"] == [f"{units.XENDOMAINS} stop"]
    assert service["TimeoutStopSec"] == ["180"]
    assert _keys(text, "Install")["WantedBy"] == ["multi-user.target"]


def test_the_console_login_waits_for_the_toolstack_and_the_autostarted_guests():
    dropin = _keys(units.getty_dropin(), "Unit")
    assert _words(dropin["After"]) == [*units.TOOLSTACK_UNITS, "xendomains.service"]
    assert "Wants" not in dropin and "Requires" not in dropin   # ordering only
    assert _keys(units.getty_dropin(), "Service")["Type"] == ["simple"]


def test_network_is_a_bridge_with_dhcp_over_the_nics_not_the_vifs():
    files = units.networkd_files()
    assert _keys(files["10-xenbr0.netdev"], "NetDev") == {"Name": ["xenbr0"], "Kind": ["bridge"]}
    assert _keys(files["10-xenbr0.network"], "Network") == {"DHCP": ["yes"]}
    ether = files["10-ether.network"]
    assert _keys(ether, "Network") == {"Bridge": ["xenbr0"]}
    names = _keys(ether, "Match")["Name"][0].split()
    assert "eth*" in names and not any(n.startswith("vif") or n == "*" for n in names)


def test_coldplug_covers_the_links_the_disks_and_the_console():
    service = _keys(units.udev_trigger_dropin("hvc0"), "Service")["ExecStart"]
    assert service[0] == ""                                           # replaces Debian's command
    assert "--subsystem-match=net" in service[1] and "--subsystem-match=block" in service[1]
    assert service[2].endswith("--sysname-match=hvc0")


def test_tmpfiles_and_modules_load():
    lines = units.tmpfiles_conf().splitlines()[1:]
    assert "d /run/xen 0755 root root -" in lines and "d /var/log/xen 0755 root root -" in lines
    assert units.modules_load_conf(["xenfs", "bridge"]).splitlines()[1:] == ["xenfs", "bridge"]


def test_enable_links_follow_install_sections_and_also():
    read = {
        "a.service": "[Install]\nWantedBy=multi-user.target\nAlias=b.service\nAlso=a.socket\n",
        "a.socket": "[Install]\nWantedBy=sockets.target\nRequiredBy=x.target\n",
    }
    etc, lib = units.ETC_UNIT_DIR, units.UNIT_DIR
    assert units.enable_closure(["a.service"], read) == [
        (f"{etc}/multi-user.target.wants/a.service", f"{lib}/a.service"),
        (f"{etc}/b.service", f"{lib}/a.service"),
        (f"{etc}/sockets.target.wants/a.socket", f"{lib}/a.socket"),
        (f"{etc}/x.target.requires/a.socket", f"{lib}/a.socket")]
    with pytest.raises(ValueError, match="cannot enable c.service: no such unit"):
        units.enable_closure(["c.service"], read)
    with pytest.raises(ValueError, match="template"):
        units.install_links("serial-getty@.service", "")


SYSUSERS = {
    "basic.conf": 'g adm 4 -\ng tty 5 -\ng nogroup 65534 -\nu root 0 - /root /bin/bash\n'
                  'u sync 4:65534 - /bin /bin/sync\nu nobody 65534:65534 - /nonexistent /usr/sbin/nologin\n',
    "systemd-journal.conf": "g systemd-journal - -\n",
    "systemd-network.conf": 'u systemd-network - "systemd Network Management"\n',
}


def test_accounts_are_made_like_sysusers_with_roots_empty_password():
    accounts = units.accounts_from_sysusers(SYSUSERS.values(), extra_groups=("kvm",))
    passwd = {line.split(":")[0]: line.split(":") for line in accounts.passwd.splitlines()}
    groups = {line.split(":")[0]: line.split(":") for line in accounts.group.splitlines()}
    assert passwd["root"] == ["root", "", "0", "0", "", "/root", "/bin/sh"]
    assert passwd["sync"][2:4] == ["4", "65534"]
    network = passwd["systemd-network"]
    assert network[1] == "*" and network[4] == "systemd Network Management"
    assert network[2] == network[3] == groups["systemd-network"][2] == "999"
    assert groups["systemd-journal"][2] == "998" and groups["kvm"][2] == "997"
    assert groups["root"][2] == "0" and groups["tty"][2] == "5"
    ids = [g[2] for g in groups.values()]
    assert len(ids) == len(set(ids))


def test_systemd_257s_locked_user_line_makes_the_account_too():
    # trixie's systemd-network.conf: "u!" is a user whose account is locked (systemd 257).
    trixie = dict(SYSUSERS, **{"systemd-network.conf": 'u! systemd-network - "systemd Network Management"\n'})
    bookworm = units.accounts_from_sysusers(SYSUSERS.values())
    accounts = units.accounts_from_sysusers(trixie.values())
    assert accounts == bookworm
    network = next(line for line in accounts.passwd.splitlines() if line.startswith("systemd-network:"))
    assert network.split(":")[1] == "*"


def test_every_file_we_write_is_in_the_mapping_table():
    mapped = " ".join(m.ours for m in units.UNIT_MAPPING)
    for path in dom0.unit_files(Distro()):
        name = Path(path).name
        if path.startswith(units.UNIT_DIR):
            assert name in mapped, name
    for name in units.networkd_files():
        assert name in mapped


# ---------------------------------------------------------------------- xendomains, with a fake xl

FAKE_XL = r"""#!/bin/sh
# A stand-in for xl: domains are files in $STATE/domains; every call is logged.
echo "$*" >> "$STATE/calls"
d=$STATE/domains
case "$1" in
    list)
        echo "Name                                        ID   Mem VCPUs      State   Time(s)"
        echo "Domain-0                                     0   384     2     r-----      10.0"
        i=1
        for f in "$d"/*; do
            [ -f "$f" ] || continue
            if [ -f "$f.stopping" ]; then
                n=$(cat "$f.stopping"); n=$((n - 1)); echo $n > "$f.stopping"
                if [ "$n" -le 0 ]; then rm -f "$f" "$f.stopping"; continue; fi
            fi
            printf '%-40s %5d   128     1     -b----       1.0\n' "${f##*/}" $i; i=$((i + 1))
        done ;;
    create)
        name=$(sed -n 's/^name = "\(.*\)"/\1/p' "$3")
        [ -f "$STATE/fail-$name" ] && { echo "cannot create $name" >&2; exit 3; }
        touch "$d/$name" ;;
    shutdown)
        [ -f "$STATE/stuck-$2" ] || echo 2 > "$d/$2.stopping" ;;
    destroy) rm -f "$d/$2" "$d/$2.stopping" ;;
    save)
        [ -f "$STATE/nosave-$2" ] && exit 1
        echo "saved $2" > "$3"; rm -f "$d/$2" ;;
    restore) touch "$d/$(sed -n 's/^saved //p' "$2")" ;;
esac
"""


class Xendomains:
    """The generated xendomains script, run by the host's sh with a fake xl."""

    def __init__(self, root: Path, maxwait: int = 5, save: str = "") -> None:
        self.root = root
        for folder in ("domains", "auto", "bin"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        (root / "calls").touch()
        xl = root / "bin/xl"
        xl.write_text(FAKE_XL)
        xl.chmod(0o755)
        script = root / "xendomains"
        script.write_text(units.xendomains_script())
        script.chmod(0o755)
        (root / "defaults").write_text(textwrap.dedent(f"""\
            XENDOMAINS_AUTO={root}/auto
            XENDOMAINS_SAVE={save}
            XENDOMAINS_RESTORE=true
            XENDOMAINS_STOP_MAXWAIT={maxwait}
            """))

    def guest(self, name: str, auto: bool = True, running: bool = False) -> None:
        config = self.root / f"{name}.cfg"
        config.write_text(f'name = "{name}"\nmemory = 128\n')
        if auto:
            (self.root / "auto" / config.name).symlink_to(f"../{config.name}")
        if running:
            (self.root / "domains" / name).touch()

    def run(self, action: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, STATE=str(self.root), XL=str(self.root / "bin/xl"),
                   XENDOMAINS_DEFAULTS=str(self.root / "defaults"))
        return subprocess.run(["sh", str(self.root / "xendomains"), action], env=env, check=False,
                              capture_output=True, text=True, timeout=60)

    def calls(self, verb: str) -> list[str]:
        return [c for c in (self.root / "calls").read_text().splitlines() if c.split()[0] == verb]

    def running(self) -> list[str]:
        return sorted(p.name for p in (self.root / "domains").iterdir() if "." not in p.name)


def test_start_creates_the_auto_guests_that_are_not_running(tmp_path):
    xd = Xendomains(tmp_path)
    xd.guest("a")
    xd.guest("b", running=True)
    xd.guest("c", auto=False)
    result = xd.run("start")
    assert result.returncode == 0, result.stderr
    assert xd.calls("create") == [f"create --quiet {tmp_path}/auto/a.cfg"]
    assert xd.running() == ["a", "b"]
    assert "b is already running" in result.stdout


def test_a_guest_that_fails_to_start_does_not_stop_the_others(tmp_path):
    xd = Xendomains(tmp_path)
    for name in ("a", "b", "c"):
        xd.guest(name)
    (tmp_path / "fail-b").touch()
    result = xd.run("start")
    assert result.returncode == 1
    assert xd.running() == ["a", "c"]
    assert "starting" in result.stderr and "b.cfg failed" in result.stderr


def test_stop_asks_every_guest_to_shut_down_and_waits_for_them(tmp_path):
    xd = Xendomains(tmp_path)
    xd.guest("a", running=True)
    xd.guest("manual", auto=False, running=True)
    result = xd.run("stop")
    assert result.returncode == 0, result.stderr
    assert sorted(xd.calls("shutdown")) == ["shutdown a", "shutdown manual"]
    assert xd.running() == [] and xd.calls("destroy") == []
    assert "no guest is running" in result.stdout


def test_a_guest_that_ignores_shutdown_is_destroyed_after_the_bound(tmp_path):
    xd = Xendomains(tmp_path, maxwait=1)
    xd.guest("stuck", running=True)
    xd.guest("fine", running=True)
    (tmp_path / "stuck-stuck").touch()
    result = xd.run("stop")
    assert result.returncode == 1
    assert xd.calls("destroy") == ["destroy stuck"]
    assert "stuck did not shut down within 1 s: destroying it" in result.stderr
    assert xd.running() == []


def test_save_mode_saves_guests_and_restores_them_at_start(tmp_path):
    saves = tmp_path / "save"
    xd = Xendomains(tmp_path, save=str(saves))
    xd.guest("a", running=True)
    xd.guest("nosave", auto=False, running=True)
    (tmp_path / "nosave-nosave").touch()
    result = xd.run("stop")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in saves.iterdir()) == ["a"]
    assert xd.calls("shutdown") == ["shutdown nosave"]          # could not be saved
    assert "saving nosave failed: shutting it down" in result.stderr
    result = xd.run("start")
    assert result.returncode == 0, result.stderr
    assert xd.calls("restore") == [f"restore {saves}/a"]
    assert list(saves.iterdir()) == [] and xd.calls("create") == []   # a runs again: not created
    assert xd.running() == ["a"]


def test_status_names_auto_guests_that_do_not_run(tmp_path):
    xd = Xendomains(tmp_path)
    xd.guest("a", running=True)
    xd.guest("b")
    result = xd.run("status")
    assert result.returncode == 1
    assert "a is running" in result.stdout and "b (" in result.stdout
    assert xd.run("bogus").returncode == 2


def test_xenstore_ready_waits_for_an_answer_within_its_bound(tmp_path):
    script = tmp_path / "xenstore-ready"
    script.write_text(units.xenstore_ready_script())
    (tmp_path / "bin").mkdir()
    fake = tmp_path / "bin/xenstore-exists"
    fake.write_text('#!/bin/sh\nn=$(cat "$COUNT" 2>/dev/null || echo 0); echo $((n + 1)) > "$COUNT"\n'
                    '[ "$n" -ge 3 ]\n')
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{tmp_path}/bin:{os.environ['PATH']}", COUNT=str(tmp_path / "count"))
    ok = subprocess.run(["sh", str(script), "5"], env=env, check=False, capture_output=True, text=True)
    assert ok.returncode == 0 and (tmp_path / "count").read_text().strip() == "4"
    fake.write_text("#!/bin/sh\nexit 1\n")
    late = subprocess.run(["sh", str(script), "1"], env=env, check=False, capture_output=True, text=True)
    assert late.returncode == 1 and "did not answer within 1 s" in late.stderr


# ---------------------------------------------------------------------- systemd's own check


def test_systemd_analyze_verify_accepts_our_units(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is missing: install the systemd package to verify the units")
    root = tmp_path / "root"
    for link, target in (("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib")):
        (root / target).mkdir(parents=True, exist_ok=True)
        (root / link).symlink_to(target)
    # systemd's own targets and slices, from the build host's systemd (what dom0's units order on)
    host_units = Path("/usr/lib/systemd/system")
    if not host_units.is_dir():
        host_units = Path("/lib/systemd/system")
    unit_dir = root / units.UNIT_DIR.lstrip("/")
    unit_dir.mkdir(parents=True)
    for unit in host_units.iterdir():
        if unit.suffix in (".target", ".slice") and unit.is_file():
            shutil.copy(unit, unit_dir / unit.name)
    for rel, text in dom0.unit_files(Distro()).items():
        path = root / rel.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for program in (f"{XEN_BIN}/xenstored", f"{XEN_BIN}/xen-init-dom0", f"{XEN_BIN}/xenconsoled",
                    units.XENDOMAINS, units.XENSTORE_READY, "/usr/bin/busybox"):
        path = root / program.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    ours = [Path(p).name for p in dom0.unit_files(Distro()) if p.startswith(units.UNIT_DIR)]
    result = subprocess.run([analyze, "verify", f"--root={root}", "--man=no", *ours],
                            check=False, capture_output=True, text=True)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
