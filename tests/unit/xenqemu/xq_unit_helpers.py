"""Helpers for the xenqemu unit tests: fake image files and an oe-core shaped qemuboot.conf."""

from __future__ import annotations

from pathlib import Path


def write(path: Path, data: bytes = b"x" * 1024) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# Shaped like the qemuboot.conf oe-core writes for xen-image-minimal on qemuarm64 with this
# layer's boot settings (keys lower-case as configparser writes them, sorted).
OE_QEMUBOOT = """[config_bsp]
deploy_dir_image = ../../../tmp/deploy/images/qemuarm64
image_link_name = xen-image-minimal-qemuarm64.rootfs
image_name = xen-image-minimal-qemuarm64.rootfs-20261126120000
kernel_image_bin_ext = .bin
kernel_image_name = Image-6.6.21+git0+abcdef-r0-qemuarm64-20261126120000
kernel_imagetype = Image
machine = qemuarm64
qb_cmdline_ip_slirp = ip=dhcp
qb_cmdline_ip_tap = ip=192.168.7.@CLIENT@::192.168.7.@GATEWAY@:255.255.255.0::eth0:off:8.8.8.8 net.ifnames=0
qb_cpu = -cpu cortex-a57
qb_cpu_kvm = -cpu host -machine gic-version=3
qb_default_fstype = ext4
qb_default_kernel = xen-qemuarm64-4.18+git-r0
qb_drive_type = /dev/sd
qb_fsinfo = wic:kernel-in-fs
qb_graphics = -device virtio-gpu-pci
qb_kernel_cmdline_append = dom0_mem=512M,max:512M bootscrub=0 console=dtuart swiotlb=0
qb_kernel_root = /dev/vda
qb_machine = -machine virt
qb_mem = -m 1024
qb_network_device = -device virtio-net-device,netdev=net0,mac=@MAC@
qb_no_pni = net.ifnames=0
qb_nfsrootfs_extra_opt = 
qb_opt_append = -device qemu-xhci -device usb-tablet -device usb-kbd -device guest-loader,addr=0x49000000,kernel=@DEPLOY_DIR_IMAGE@/Image,bootargs="console=hvc0 root=/dev/vda rw" -device guest-loader,addr=0x4c000000,initrd=@DEPLOY_DIR_IMAGE@/initrd.cpio.gz
qb_rng = -object rng-random,filename=/dev/urandom,id=rng0 -device virtio-rng-pci,rng=rng0
qb_rootfs_extra_opt = 
qb_rootfs_opt = -drive id=disk0,file=@ROOTFS@,if=none,format=raw -device virtio-blk-device,drive=disk0
qb_serial_opt = -device virtio-serial-pci -chardev null,id=virtcon -device virtconsole,chardev=virtcon
qb_smp = -smp 4
qb_system_name = qemu-system-aarch64
qb_tap_nameserver = 8.8.8.8
qb_tap_opt = -netdev tap,id=net0,ifname=@TAP@,script=no,downscript=no
qb_tcpserial_opt = -device virtio-serial-pci -chardev socket,id=virtcon,port=@PORT@,host=127.0.0.1,nodelay=on -device virtconsole,chardev=virtcon
serial_consoles = 115200;ttyAMA0 115200;hvc0
staging_bindir_native = ../../../work/x86_64-linux/qemu-helper-native/1.0/recipe-sysroot-native/usr/bin/
staging_dir_host = ../../../work/qemuarm64-poky-linux/xen-image-minimal/1.0/recipe-sysroot
staging_dir_native = ../../../work/qemuarm64-poky-linux/xen-image-minimal/1.0/recipe-sysroot-native
tune_arch = aarch64
uninative_loader = ../../../sysroots-uninative/x86_64-linux/lib/ld-linux-x86-64.so.2
"""




def yaml_target(tmp_path: Path, text: str) -> Path:
    write(tmp_path / "img" / "xen")
    write(tmp_path / "img" / "vmlinuz", b"k" * (3 * 1024 * 1024))
    write(tmp_path / "img" / "initrd.gz")
    write(tmp_path / "img" / "dom0.ext4")
    path = tmp_path / "target.yaml"
    path.write_text(text)
    return path


GOOD_YAML = """\
name: debian-xen
kernel: img/xen
xen_cmdline: "dom0_mem=384M,max:384M bootscrub=0 console=dtuart"
dom0:
  kernel: img/vmlinuz
  bootargs: "console=hvc0 root=/dev/vda rw quiet"
  initrd: img/initrd.gz
rootfs: img/dom0.ext4
smp: 2
memory: 1G
extra_args: ["-device", "virtio-rng-device"]
"""
