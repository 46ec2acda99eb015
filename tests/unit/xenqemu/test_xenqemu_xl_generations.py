"""``xl info`` and ``xl list`` of both Xen generations the reference target runs read the same.

The texts are verbatim captures from the harness's transcripts: bookworm's Xen 4.17.7 and trixie's
Xen 4.20 (Debian's 4.20.4+63 reports ``4.20.5-pre``) on the arm64 reference target. 4.20 adds
``arm_sve_vector_length`` to ``xl info`` (SVE support came in 4.18); ``xl list`` keeps its columns.
Every field the lifecycle check reads is there on both, with the same meaning.
"""

from __future__ import annotations

import pytest
from xenqemu.lifecycle import dom0_memory_mib
from xenqemu.xl import free_memory_of, parse_xl_info, parse_xl_list

INFO_4_17 = """host                   : qemuarm64
release                : 6.1.0-57-arm64
version                : #1 SMP Debian 6.1.192-3 (2026-11-26)
machine                : aarch64
nr_cpus                : 2
max_cpu_id             : 1
nr_nodes               : 1
cores_per_socket       : 1
threads_per_core       : 1
cpu_mhz                : 62.500
hw_caps                : 00000000:00000000:00000000:00000000:00000000:00000000:00000000:00000000
virt_caps              : hvm hap vpmu gnttab-v1
total_memory           : 1024
free_memory            : 622
sharing_freed_memory   : 0
sharing_used_memory    : 0
outstanding_claims     : 0
free_cpus              : 0
xen_major              : 4
xen_minor              : 17
xen_extra              : .7
xen_version            : 4.17.7
xen_caps               : xen-3.0-aarch64 xen-3.0-armv7l 
xen_scheduler          : credit2
xen_pagesize           : 4096
platform_params        : virt_start=0x200000
xen_changeset          : 
xen_commandline        : dom0_mem=384M,max:384M dom0_max_vcpus=2 bootscrub=0 loglvl=warning guest_loglvl=warning console=dtuart
cc_compiler            : aarch64-linux-gnu-gcc (Debian 12.2.0-14+deb12u1) 12.2.0
cc_compile_by          : pkg-xen-devel
cc_compile_domain      : lists.alioth.debian.org
cc_compile_date        : Wed Nov  4 16:52:28 UTC 2026
build_id               : 7a23ea1ef3374f2c4453d67a7962e1d695e9f270
xend_config_format     : 4
"""

INFO_4_20 = """host                   : qemuarm64
release                : 6.12.118+deb13-arm64
version                : #1 SMP Debian 6.12.118-1 (2026-11-20)
machine                : aarch64
nr_cpus                : 2
max_cpu_id             : 1
nr_nodes               : 1
cores_per_socket       : 2
threads_per_core       : 1
cpu_mhz                : 62.500
hw_caps                : 00000000:00000000:00000000:00000000:00000000:00000000:00000000:00000000
virt_caps              : hvm hap vpmu gnttab-v1
arm_sve_vector_length  : 0
total_memory           : 1024
free_memory            : 492
sharing_freed_memory   : 0
sharing_used_memory    : 0
outstanding_claims     : 0
free_cpus              : 0
xen_major              : 4
xen_minor              : 20
xen_extra              : .5-pre
xen_version            : 4.20.5-pre
xen_caps               : xen-3.0-aarch64 xen-3.0-armv7l 
xen_scheduler          : credit2
xen_pagesize           : 4096
platform_params        : virt_start=0x0
xen_changeset          : 
xen_commandline        : dom0_mem=384M,max:384M bootscrub=0 dom0_max_vcpus=2 loglvl=info guest_loglvl=warning console=dtuart
cc_compiler            : aarch64-linux-gnu-gcc (Debian 14.2.0-19) 14.2.0
cc_compile_by          : pkg-xen-devel
cc_compile_domain      : lists.alioth.debian.org
cc_compile_date        : Tue Nov  3 20:11:50 UTC 2026
build_id               : cd2aa25fb8bd6775334588037f855574524dbc12
xend_config_format     : 4
"""

LIST_4_17 = """Name                                        ID   Mem VCPUs\tState\tTime(s)
Domain-0                                     0   384     2     r-----     124.1
thirdparty-guest                             2   128     1     -b----      11.5
"""

LIST_4_20 = """Name                                        ID   Mem VCPUs\tState\tTime(s)
Domain-0                                     0   384     2     r-----     282.6
xen-guest-image-autostart-qemuarm64          1   128     1     ------      34.9
"""


@pytest.mark.parametrize("text, version, free", [(INFO_4_17, "4.17.7", 622), (INFO_4_20, "4.20.5-pre", 492)])
def test_xl_info_of_both_generations_gives_what_the_lifecycle_reads(text, version, free):
    info = parse_xl_info(text)
    assert info["xen_version"] == version
    assert free_memory_of(info) == free
    assert info["total_memory"] == "1024" and info["nr_cpus"] == "2"
    assert dom0_memory_mib(info["xen_commandline"]) == 384
    assert f"{info['xen_major']}.{info['xen_minor']}{info['xen_extra']}" == version


def test_4_20_adds_only_the_sve_vector_length_to_xl_info():
    assert set(parse_xl_info(INFO_4_20)) - set(parse_xl_info(INFO_4_17)) == {"arm_sve_vector_length"}
    assert set(parse_xl_info(INFO_4_17)) <= set(parse_xl_info(INFO_4_20))


def test_xl_list_rows_of_both_generations_parse_alike():
    old, new = parse_xl_list(LIST_4_17), parse_xl_list(LIST_4_20)
    assert [(d.name, d.id, d.mem) for d in old] == [("Domain-0", 0, 384), ("thirdparty-guest", 2, 128)]
    assert [(d.name, d.id, d.mem) for d in new] == [("Domain-0", 0, 384),
                                                   ("xen-guest-image-autostart-qemuarm64", 1, 128)]
    # 4.20 listed the guest xendomains started as runnable but not running (no state letter):
    # it exists and is neither paused, crashed nor dying.
    autostarted = new[1]
    assert autostarted.state == "------" and not autostarted.in_state("pcd")
