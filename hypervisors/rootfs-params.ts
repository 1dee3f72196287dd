// How the guest kernel finds its root filesystem, for the VMMs that present the rootfs
// image as persistent memory (QEMU's NVDIMM, Cloud Hypervisor's virtio-pmem).
import { GuestRootfs } from './hypervisor';

/**
 * The image is /dev/pmem0 in fsdax mode (its DAX header says so), ext4 mounted
 * read-only with -o dax: the guest maps its pages instead of caching a copy. An
 * initrd needs no parameters: the kernel unpacks it as the root.
 */
export function rootfsKernelParams(rootfs: GuestRootfs): string[] {
  return rootfs.kind === 'image' ? ['root=/dev/pmem0', 'rootfstype=ext4', 'rootflags=dax', 'ro', 'rootwait', 'init=/init'] : [];
}
