// Builds QEMU's argument list from a VmConfig. Pure, so it is unit-tested without QEMU.
import * as path from 'path';
import { VmConfig } from '../hypervisor';

export interface QemuPaths {
  qmpSocket: string;
  pidFile: string;
}

export function qemuPaths(workDir: string): QemuPaths {
  return {
    qmpSocket: path.join(workDir, 'qmp.sock'),
    pidFile: path.join(workDir, 'qemu.pid'),
  };
}

/** Driver options that are not part of the VM's description. */
export interface QemuOptions {
  /** PCIe root ports reserved at boot for hot-plugged devices; default DEFAULT_HOTPLUG_PORTS. */
  hotplugPorts?: number;
}

export const DEFAULT_HOTPLUG_PORTS = 4;

/** Ids of the root ports `buildQemuArgs` reserves, in the order hot-plug uses them. */
export function hotplugPortIds(options: QemuOptions): string[] {
  return Array.from({ length: options.hotplugPorts ?? DEFAULT_HOTPLUG_PORTS }, (_, i) => `rp${i}`);
}

/** Characters QEMU's option parser treats specially inside a value. */
function escapeOptionValue(value: string): string {
  return value.replace(/,/g, ',,');
}

export function buildQemuArgs(config: VmConfig, options: QemuOptions = {}): string[] {
  const paths = qemuPaths(config.workDir);
  const args: string[] = [
    '-name', `sandbox-${config.id},debug-threads=on`,
    // q35 + PCI devices; accel chosen by configuration (tcg where KVM is unusable).
    '-machine', `q35,accel=${config.accelerator}`,
    '-cpu', config.accelerator === 'kvm' ? 'host' : 'max',
    '-m', `${config.memoryMiB}M`,
    '-smp', String(config.vcpus),
    '-nodefaults', '-no-user-config', '-nographic', '-no-reboot',
    '-qmp', `unix:${escapeOptionValue(paths.qmpSocket)},server=on,wait=off`,
    '-pidfile', paths.pidFile,
    // The guest console goes to QEMU's stdout, a pipe the driver reads into a bounded
    // buffer (qemu.ts): a file would let the guest fill the host's tmpfs. signal=off:
    // console bytes are never Ctrl-C for QEMU.
    '-chardev', 'stdio,id=console,signal=off',
    '-serial', 'chardev:console',
    '-kernel', config.kernelPath,
    '-initrd', config.initrdPath,
    '-append', config.kernelParams.join(' '),
    '-device', 'virtio-rng-pci',
  ];

  const channel = config.agentChannel;
  switch (channel.kind) {
    case 'virtio-serial':
      args.push(
        '-device', 'virtio-serial-pci,id=serial0',
        '-chardev', `socket,id=agent,path=${escapeOptionValue(channel.socketPath)},server=on,wait=off`,
        '-device', `virtserialport,chardev=agent,name=${channel.portName}`,
      );
      break;
    case 'vsock':
      args.push('-device', `vhost-vsock-pci,id=vsock0,guest-cid=${channel.guestCid}`);
      break;
    case 'hybrid-vsock':
      throw new Error('QEMU has no hybrid vsock; use virtio-serial or vsock');
  }

  config.sharedDirectories.forEach((dir, index) => {
    const id = `fs${index}`;
    args.push(
      // multidevs=remap keeps inode numbers unique when the share spans several host
      // filesystems (each container rootfs is its own overlay mount).
      '-fsdev', `local,id=${id},path=${escapeOptionValue(dir.hostPath)},security_model=none,multidevs=remap`,
      '-device', `virtio-9p-pci,fsdev=${id},mount_tag=${dir.tag}`,
    );
  });

  config.network?.nics.forEach((nic, index) => {
    // QEMU runs inside the pod netns (see qemu.ts) and opens the tap there by name.
    // vhost-net is off: it needs /dev/vhost-net and gains nothing under TCG.
    args.push(
      '-netdev', `tap,id=net${index},ifname=${nic.tapName},script=no,downscript=no,vhost=off`,
      '-device', `virtio-net-pci,netdev=net${index},mac=${nic.mac}`,
    );
  });
  // q35 hot-plugs PCIe devices only into root ports that exist at boot, one device per
  // port; QEMU wants a unique (chassis, slot) pair on each.
  hotplugPortIds(options).forEach((id, index) => {
    args.push('-device', `pcie-root-port,id=${id},bus=pcie.0,chassis=1,slot=${index + 1}`);
  });
  return args;
}
