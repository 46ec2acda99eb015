# With DISTRO_FEATURES "xen" only (the file is empty otherwise, so that
# adding this layer changes GRUB for no other distro): GRUB's EFI image gets
# what starts Xen on x86-64 EFI disks (grub-efi-xen-ref.inc).
require ${@bb.utils.contains('DISTRO_FEATURES', 'xen', 'grub-efi-xen-ref.inc', '', d)}
