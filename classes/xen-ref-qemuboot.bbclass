# runqemu settings for a Xen host image on qemuarm64:
#
#   runqemu qemuarm64 nographic slirp
#
# boots QEMU's -kernel = the Xen binary that meta-virtualization's xen recipe
# deploys (xen-${MACHINE}); QEMU's "guest-loader" device loads the dom0 kernel
# and adds it, with its command line, to the device tree that QEMU generates.
# Nothing is sized at build time, so rebuilding only the kernel, or running
# with other -smp/-m values, just works.
#
# With guest-loader, runqemu's -append becomes Xen's command line. runqemu
# puts root=, ip=, mem= and one console= per SERIAL_CONSOLES entry there;
# Xen ignores what it does not know, but the last console= wins, so
# QB_XEN_CMDLINE (appended after them) ends with console=dtuart.
#
# Every QB_* variable ends up in the image's qemuboot.conf, so the Xen parts
# are also kept in QB_XEN_* variables that a test harness can read without
# parsing QEMU options (the "qemuboot.conf contract" in docs/bundling.md).
# Tune the QB_XEN_* variables, not the composed QB_* ones.
#
# The defaults below are xenboot's (lib/xenboot/contract.py), the one home of
# this contract: the harness, the reference target and scripts/oe read and
# write it there, and tests/bitbake checks that these ?= defaults agree.

# Xen's command line; keep console=dtuart last.
QB_XEN_CMDLINE ?= "dom0_mem=${QB_XEN_DOM0_MEM},max:${QB_XEN_DOM0_MEM} bootscrub=0 ${QB_XEN_CMDLINE_EXTRA} console=dtuart"
# Memory given to dom0 (Xen size syntax).
QB_XEN_DOM0_MEM ?= "512M"
# More Xen options (for example "loglvl=all guest_loglvl=all").
QB_XEN_CMDLINE_EXTRA ?= ""
# dom0 kernel: a file name in DEPLOY_DIR_IMAGE (next to qemuboot.conf).
QB_XEN_DOM0_KERNEL ?= "${KERNEL_IMAGETYPE}"
# Guest physical address guest-loader loads the dom0 kernel at: above the
# device tree QEMU places at RAM base + 128 MiB.
QB_XEN_DOM0_ADDR ?= "0x49000000"
# dom0's kernel command line (guest-loader "bootargs"); root is the virtio-mmio
# disk from QB_ROOTFS_OPT.
QB_XEN_DOM0_BOOTARGS ?= "console=hvc0 root=/dev/vda rw rootwait"
# Optional dom0 initrd: a file name in DEPLOY_DIR_IMAGE, loaded by a second
# guest-loader (for dom0 kernels that load their disk drivers from an initrd).
QB_XEN_DOM0_INITRD ?= ""
# Where it is loaded: 48 MiB above the kernel, room for a large Image.
QB_XEN_DOM0_INITRD_ADDR ?= "0x4c000000"

# QEMU option syntax: a "," inside a value is written ",," (xenboot.qemuopts).
def xen_ref_qemu_opt_escape(value):
    import xenboot.qemuopts
    return xenboot.qemuopts.escape(value or "")

QB_XEN_GUEST_LOADER = "guest-loader,addr=${QB_XEN_DOM0_ADDR},kernel=@DEPLOY_DIR_IMAGE@/${QB_XEN_DOM0_KERNEL},bootargs=${@xen_ref_qemu_opt_escape(d.getVar('QB_XEN_DOM0_BOOTARGS'))}"
QB_XEN_INITRD_LOADER = "${@' -device guest-loader,addr=${QB_XEN_DOM0_INITRD_ADDR},initrd=@DEPLOY_DIR_IMAGE@/${QB_XEN_DOM0_INITRD}' if d.getVar('QB_XEN_DOM0_INITRD') else ''}"

# Xen needs EL2 (virtualization=on) and a GICv3 under TCG; cortex-a57 avoids
# the slow pointer-authentication emulation of "-cpu max".
QB_MACHINE:qemuarm64 = "-machine virt,gic-version=3,virtualization=on"
QB_CPU:qemuarm64 = "-cpu cortex-a57"
QB_MEM ?= "-m 2048"
QB_DEFAULT_KERNEL:qemuarm64 = "xen-${MACHINE}"
QB_DEFAULT_FSTYPE ?= "ext4"
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
# console= word reaches only Xen, which ignores it (console=dtuart is last).
QB_TCPSERIAL_OPT:qemuarm64 = "-serial tcp:127.0.0.1:@PORT@,nodelay=on"
SERIAL_CONSOLES:qemuarm64 = "115200;hvc0"

# runqemu boots the ext4 (QB_DEFAULT_FSTYPE); machines may only build compressed types.
IMAGE_FSTYPES:append = " ext4"

# qemuboot.conf names the Xen binary and the dom0 kernel: both must be
# deployed before it is written (do_write_qemuboot_conf resolves
# QB_DEFAULT_KERNEL to the real file) and before the image is complete.
do_write_qemuboot_conf[depends] += "xen:do_deploy virtual/kernel:do_deploy"
