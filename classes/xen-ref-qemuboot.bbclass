# How a Xen host image boots, and the runqemu settings of the QEMU machines:
#
#   runqemu qemuarm64 nographic slirp
#   runqemu qemuarm nographic slirp
#   runqemu qemux86-64 nographic slirp
#
# On Arm (qemuarm64, qemuarm) QEMU's -kernel is the Xen binary that
# meta-virtualization's xen recipe deploys (xen-${MACHINE}); QEMU's
# "guest-loader" device loads the dom0 kernel and adds it, with its command
# line, to the device tree that QEMU generates. Nothing is sized at build time,
# so rebuilding only the kernel, or running with other -smp/-m values, just
# works. With guest-loader, runqemu's -append becomes Xen's command line.
# runqemu puts root=, ip=, mem= and one console= per SERIAL_CONSOLES entry
# there; Xen ignores what it does not know, but the last console= wins, so
# QB_XEN_CMDLINE (appended after them) ends with Xen's console.
#
# On x86-64 the image is a disk (wic) whose boot loader starts Xen with dom0
# as a multiboot module (xen-ref-x86-boot, which takes Xen's and dom0's
# command lines from the same QB_XEN_* variables); runqemu boots the disk
# with QEMU's firmware (QB_DEFAULT_KERNEL = "none").
#
# Every QB_* variable ends up in the image's qemuboot.conf, so the Xen parts
# are also kept in QB_XEN_* variables that a test harness can read without
# parsing QEMU options (the "qemuboot.conf contract" in docs/bundling.md).
# Tune the QB_XEN_* variables, not the composed QB_* ones. docs/machines.md
# has the table per machine.
#
# The defaults below are xenboot's (lib/xenboot/contract.py, arch_defaults()),
# the one home of this contract: the harness, the reference target and
# scripts/oe read and write it there, and tests/bitbake checks that these
# defaults agree, per machine.

# Xen's console, the last words of its command line. Per architecture:
# the UART the device tree names on Arm, COM1 on x86.
XEN_REF_XEN_CONSOLE_DEFAULT = "console=dtuart"
XEN_REF_XEN_CONSOLE_DEFAULT:x86-64 = "com1=115200,8n1 console=com1"
QB_XEN_CONSOLE ?= "${XEN_REF_XEN_CONSOLE_DEFAULT}"
# Xen's command line; keep QB_XEN_CONSOLE last.
QB_XEN_CMDLINE ?= "dom0_mem=${QB_XEN_DOM0_MEM},max:${QB_XEN_DOM0_MEM} bootscrub=0 ${QB_XEN_CMDLINE_EXTRA} ${QB_XEN_CONSOLE}"
# Memory given to dom0 (Xen size syntax).
QB_XEN_DOM0_MEM ?= "512M"
# More Xen options (for example "loglvl=all guest_loglvl=all").
QB_XEN_CMDLINE_EXTRA ?= ""
# dom0 kernel: a file name in DEPLOY_DIR_IMAGE (next to qemuboot.conf).
QB_XEN_DOM0_KERNEL ?= "${KERNEL_IMAGETYPE}"
# Guest physical address guest-loader loads the dom0 kernel at: above the
# device tree QEMU places at RAM base + 128 MiB.
QB_XEN_DOM0_ADDR ?= "0x49000000"
# dom0's kernel command line (guest-loader "bootargs" on Arm, the module's
# command line on x86). Its root per architecture: the virtio-mmio disk of
# QB_ROOTFS_OPT on Arm, the second partition of the x86 disk image.
XEN_REF_DOM0_BOOTARGS_DEFAULT = "console=hvc0 root=/dev/vda rw rootwait"
XEN_REF_DOM0_BOOTARGS_DEFAULT:x86-64 = "console=hvc0 earlyprintk=xen root=/dev/sda2 rw rootwait"
QB_XEN_DOM0_BOOTARGS ?= "${XEN_REF_DOM0_BOOTARGS_DEFAULT}"
# Optional dom0 initrd: a file name in DEPLOY_DIR_IMAGE, loaded by a second
# guest-loader on Arm, a second multiboot module on x86 (for dom0 kernels
# that load their disk drivers from an initrd).
QB_XEN_DOM0_INITRD ?= ""
# Where it is loaded: 48 MiB above the kernel, room for a large Image.
QB_XEN_DOM0_INITRD_ADDR ?= "0x4c000000"

# QEMU option syntax: a "," inside a value is written ",," (xenboot.qemuopts).
def xen_ref_qemu_opt_escape(value):
    import xenboot.qemuopts
    return xenboot.qemuopts.escape(value or "")

QB_XEN_GUEST_LOADER = "guest-loader,addr=${QB_XEN_DOM0_ADDR},kernel=@DEPLOY_DIR_IMAGE@/${QB_XEN_DOM0_KERNEL},bootargs=${@xen_ref_qemu_opt_escape(d.getVar('QB_XEN_DOM0_BOOTARGS'))}"
QB_XEN_INITRD_LOADER = "${@' -device guest-loader,addr=${QB_XEN_DOM0_INITRD_ADDR},initrd=@DEPLOY_DIR_IMAGE@/${QB_XEN_DOM0_INITRD}' if d.getVar('QB_XEN_DOM0_INITRD') else ''}"

QB_MEM ?= "-m 2048"
QB_DEFAULT_FSTYPE ?= "ext4"

# ---- qemuarm64: Xen needs EL2 (virtualization=on) and a GICv3 under TCG;
# cortex-a57 avoids the slow pointer-authentication emulation of "-cpu max".
QB_MACHINE:qemuarm64 = "-machine virt,gic-version=3,virtualization=on"
QB_CPU:qemuarm64 = "-cpu cortex-a57"
QB_DEFAULT_KERNEL:qemuarm64 = "xen-${MACHINE}"
QB_KERNEL_CMDLINE_APPEND:qemuarm64 = "${QB_XEN_CMDLINE}"
# virtio-mmio devices: Xen hands them to dom0 as they are.
QB_ROOTFS_OPT:qemuarm64 = "-drive id=disk0,file=@ROOTFS@,if=none,format=raw -device virtio-blk-device,drive=disk0"
QB_NETWORK_DEVICE:qemuarm64 = "-device virtio-net-device,netdev=net0,mac=@MAC@"
QB_RNG:qemuarm64 = "-object rng-random,filename=/dev/urandom,id=rng0 -device virtio-rng-device,rng=rng0"
QB_GRAPHICS:qemuarm64 = ""
# Replaces the machine's USB devices; runqemu substitutes @DEPLOY_DIR_IMAGE@.
QB_OPT_APPEND:qemuarm64 = '-device "${QB_XEN_GUEST_LOADER}"${QB_XEN_INITRD_LOADER}'
# The login console is Xen's: the PL011 that Xen drives carries Xen's and
# dom0's hvc0 output. qemuarm64's QB_TCPSERIAL_OPT is a virtio-serial
# console that dom0 never logs in on, so testimage's QemuRunner (which
# connects its first tcpserial port there) would wait for a login banner
# that never comes. One console entry keeps testimage at one port; its
# console= word reaches only Xen, which ignores it (Xen's console is last).
QB_TCPSERIAL_OPT:qemuarm64 = "-serial tcp:127.0.0.1:@PORT@,nodelay=on"
SERIAL_CONSOLES:qemuarm64 = "115200;hvc0"

# ---- qemuarm (32-bit): the same boot as qemuarm64. GICv2, because Xen's
# 32-bit Arm port builds its GICv3 driver only for 64-bit (4.17) or not by
# default (later releases); highmem=off keeps QEMU's PCI and MMIO windows
# below 4 GiB, where a 32-bit Xen reaches them; the machine's cortex-a15 has
# the virtualization extensions (EL2 with virtualization=on under TCG).
# (docs/machines.md: Debian's armhf Xen 4.17 boots dom0 so under QEMU 7.2.)
QB_MACHINE:qemuarm = "-machine virt,highmem=off,gic-version=2,virtualization=on"
QB_DEFAULT_KERNEL:qemuarm = "xen-${MACHINE}"
QB_KERNEL_CMDLINE_APPEND:qemuarm = "${QB_XEN_CMDLINE}"
QB_ROOTFS_OPT:qemuarm = "-drive id=disk0,file=@ROOTFS@,if=none,format=raw -device virtio-blk-device,drive=disk0"
QB_NETWORK_DEVICE:qemuarm = "-device virtio-net-device,netdev=net0,mac=@MAC@"
QB_RNG:qemuarm = "-object rng-random,filename=/dev/urandom,id=rng0 -device virtio-rng-device,rng=rng0"
QB_GRAPHICS:qemuarm = ""
QB_OPT_APPEND:qemuarm = '-device "${QB_XEN_GUEST_LOADER}"${QB_XEN_INITRD_LOADER}'
QB_TCPSERIAL_OPT:qemuarm = "-serial tcp:127.0.0.1:@PORT@,nodelay=on"
SERIAL_CONSOLES:qemuarm = "115200;hvc0"

# ---- qemux86-64: runqemu boots the wic disk with SeaBIOS (or OVMF with
# "runqemu ... ovmf" and XEN_BOOT_MODE = "efi"); its boot loader starts Xen.
# The disk is a SCSI disk (qemuboot's QB_DRIVE_TYPE "/dev/sd"): dom0's
# /dev/sda. Xen's console is COM1, QEMU's first serial port, which also
# carries dom0's hvc0: the one console entry (see qemuarm64).
QB_DEFAULT_KERNEL:qemux86-64 = "none"
QB_DEFAULT_FSTYPE:qemux86-64 = "wic"
QB_FSINFO:qemux86-64 = "wic:kernel-in-fs"
# With KVM, dom0 sees the host's CPU features (the machine's named model can
# lose some under Xen's CPUID policy) and HVM guests need nested VMX/SVM.
QB_CPU_KVM:qemux86-64 = "-cpu host -machine q35,i8042=off"
QB_TCPSERIAL_OPT:qemux86-64 = "-serial tcp:127.0.0.1:@PORT@,nodelay=on"
SERIAL_CONSOLES:qemux86-64 = "115200;hvc0"

# runqemu boots the ext4 (Arm) or the wic disk (x86-64); the machines may
# only build compressed types.
IMAGE_FSTYPES:append:qemuarm64 = " ext4"
IMAGE_FSTYPES:append:qemuarm = " ext4"
IMAGE_FSTYPES:append:qemux86-64 = " wic"

# The architectures meta-virtualization's xen recipe builds the hypervisor for
# (COMPATIBLE_HOST of xen-hypervisor.inc on scarthgap and wrynose: x86_64,
# aarch64 and 32-bit arm), as oe-core's TARGET_ARCH. Extend it if your BSP's
# Xen builds for more.
XEN_REF_XEN_ARCHS ??= "x86_64 aarch64 arm"

# A host image for a machine Xen does not build for is skipped with the
# reason (bitbake shows it), instead of failing late for want of "xen".
# nooelint: oelint.task.noanonpython
python __anonymous() {
    arch = d.getVar("TARGET_ARCH")
    archs = (d.getVar("XEN_REF_XEN_ARCHS") or "").split()
    if arch and arch not in archs:
        raise bb.parse.SkipRecipe(
            "MACHINE %s builds for %s, and meta-virtualization's xen recipe builds the Xen hypervisor "
            "for %s only (XEN_REF_XEN_ARCHS): a Xen host image cannot boot here. Build it for a "
            "machine of one of those architectures (qemuarm64, qemuarm, qemux86-64, or a board "
            "whose BSP provides Xen)." % (d.getVar("MACHINE"), arch, ", ".join(archs)))
}

# qemuboot.conf names the Xen binary and the dom0 kernel: both must be
# deployed before it is written (do_write_qemuboot_conf resolves
# QB_DEFAULT_KERNEL to the real file) and before the image is complete.
do_write_qemuboot_conf[depends] += "xen:do_deploy virtual/kernel:do_deploy"
