// Builds QEMU's argument list from a VmConfig. Pure, so it is unit-tested without QEMU.
import * as path from 'path';
import { VmConfig, VmSize } from '../hypervisor';
import { rootfsKernelParams } from '../rootfs-params';
import { hotplugLimits, vsockChannelKernelParams } from '../vm-requirements';
import { virtiofsSocket, VirtiofsdOptions } from '../virtiofsd';
import { BACKEND_MEMORY_SLOTS, vsockBackendPaths } from '../vsock-backend';

/** The agent's vhost-user-vsock device, by which QMP names it (vsock-device-start.ts). */
export const VSOCK_DEVICE_ID = 'vsock0';

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
  /** Whether the guest CPU keeps QEMU's virtual PMU; false adds pmu=off to -cpu (Kata's cpu_features = "pmu=off"). Default true. */
  pmu?: boolean;
  /**
   * Under TCG: the translation buffer's cap in MiB (`-accel tcg,tb-size=N`). Unset:
   * QEMU's own size. (QEMU takes tb-size only on -accel, and -accel excludes -machine accel=.)
   */
  tcgTbSizeMiB?: number;
  /**
   * Set: shared directories go over virtio-fs, each served by a virtiofsd the driver
   * starts (vhost-user-fs-pci, guest RAM in shared memory). Unset: virtio-9p.
   */
  virtioFs?: VirtiofsdOptions;
  /**
   * Set: the agent channel is hybrid vsock through this vhost-device-vsock binary
   * (vhost-user-vsock-pci, guest RAM in shared memory; vsock-backend.ts). Unset: virtio-serial.
   */
  vsockBackend?: string;
}

export const DEFAULT_HOTPLUG_PORTS = 4;

/** DIMM slots kept free for memory hot-plug when the VM may grow. */
export const MEMORY_HOTPLUG_SLOTS = 8;

/**
 * The DIMM slots this VM gets for memory hot-plug: MEMORY_HOTPLUG_SLOTS, fewer with
 * the vsock backend, which maps at most BACKEND_MEMORY_SLOTS regions, the boot RAM
 * being one (the read-only rootfs NVDIMM is not passed to vhost-user backends).
 */
export function memoryHotplugSlots(options: QemuOptions): number {
  return options.vsockBackend ? Math.min(MEMORY_HOTPLUG_SLOTS, BACKEND_MEMORY_SLOTS - 1) : MEMORY_HOTPLUG_SLOTS;
}

/**
 * Whether the guest RAM (boot RAM and every hot-plugged DIMM) must be shared memory:
 * vhost-user backends (virtiofsd, vhost-device-vsock) map it.
 */
export function needsSharedRam(config: Pick<VmConfig, 'sharedDirectories'>, options: QemuOptions): boolean {
  return (options.virtioFs !== undefined && config.sharedDirectories.length > 0) || options.vsockBackend !== undefined;
}

/** What the command line needs to know about the host files it names. */
export interface QemuHostFacts {
  /** Size of the rootfs image in bytes (rootfs kind "image"). */
  rootfsImageBytes?: number;
}

/**
 * A VM that is, or starts from, a template (sandbox/vm-templates.ts). Both boot with the
 * same device set, so the state migrates; the RAM is one file: the template maps it
 * shared (its pages are the file), each clone privately (copy-on-write).
 */
export interface QemuTemplateRole {
  role: 'template' | 'clone';
  memoryPath: string;
}

/** Why this VM cannot be, or start from, a template; undefined when it can. */
export function templateRefusal(config: Pick<VmConfig, 'sharedDirectories'>, options: QemuOptions): string | undefined {
  if (options.virtioFs && config.sharedDirectories.length > 0) return 'virtio-fs maps the guest RAM from virtiofsd, which a clone\'s private (copy-on-write) RAM cannot be';
  if (options.vsockBackend) return 'the vsock backend maps the guest RAM, which a clone\'s private (copy-on-write) RAM cannot be';
  return undefined;
}

const MiB = 1024 * 1024;
/** The boot RAM's memory backend when it must be shared (virtio-fs). */
const BOOT_RAM_ID = 'ram0';
/** DAX maps the image in 2 MiB pages; its NVDIMM must sit on that alignment. */
const NVDIMM_ALIGN = 2 * MiB;

/** Ids of the root ports `buildQemuArgs` reserves, in the order hot-plug uses them. */
export function hotplugPortIds(options: QemuOptions): string[] {
  return Array.from({ length: options.hotplugPorts ?? DEFAULT_HOTPLUG_PORTS }, (_, i) => `rp${i}`);
}

/** Characters QEMU's option parser treats specially inside a value. */
function escapeOptionValue(value: string): string {
  return value.replace(/,/g, ',,');
}

export function buildQemuArgs(config: VmConfig, options: QemuOptions = {}, host: QemuHostFacts = {}, template?: QemuTemplateRole): string[] {
  const paths = qemuPaths(config.workDir);
  const image = config.rootfs.kind === 'image' ? config.rootfs : undefined;
  if (image && !host.rootfsImageBytes) throw new Error('buildQemuArgs: the rootfs image size is required');
  const limits = hotplugLimits(config, 'qemu');
  const channel = config.agentChannel;
  if (channel.kind === 'hybrid-vsock' && !options.vsockBackend) throw new Error('QEMU reaches a hybrid vsock only through a vsock backend (vhost-device-vsock); none is configured');
  if (channel.kind !== 'hybrid-vsock' && options.vsockBackend) throw new Error(`a vsock backend is configured, but the agent channel is ${channel.kind}`);
  const vsock = channel.kind === 'hybrid-vsock';
  const sharedRam = needsSharedRam(config, options);
  if (template) {
    const refusal = templateRefusal(config, options);
    if (refusal) throw new Error(`a VM template cannot be used: ${refusal}`);
    // The clone's command line must be the template's: its NICs are hot-plugged (qemu.ts).
    if (config.network && config.network.nics.length > 0) throw new Error('a template or clone VM boots without NICs; they are hot-plugged once it runs');
  }
  const ramBackend = sharedRam || template !== undefined;
  const channelParams = vsockChannelKernelParams(config);
  const tbSize = config.accelerator === 'tcg' && options.tcgTbSizeMiB ? options.tcgTbSizeMiB : undefined;
  const args: string[] = [
    '-name', `sandbox-${config.id},debug-threads=on`,
    ...(tbSize ? ['-accel', `tcg,tb-size=${tbSize}`] : []),
    // q35 + PCI devices; accel chosen by configuration (tcg where KVM is unusable).
    '-machine', `q35${tbSize ? '' : `,accel=${config.accelerator}`}${image ? ',nvdimm=on' : ''}${config.memoryMerge === undefined ? '' : `,mem-merge=${config.memoryMerge ? 'on' : 'off'}`}${ramBackend ? `,memory-backend=${BOOT_RAM_ID}` : ''}`,
    // pmu=off: no virtual performance counters (QEMU 7.2 takes it for host under KVM and max under TCG).
    '-cpu', `${config.accelerator === 'kvm' ? 'host' : 'max'}${options.pmu === false ? ',pmu=off' : ''}`,
    '-m', memoryOption(config.memoryMiB, limits, image ? host.rootfsImageBytes! : 0, memoryHotplugSlots(options)),
    '-smp', limits.vcpus > config.vcpus ? `${config.vcpus},maxcpus=${limits.vcpus}` : String(config.vcpus),
    '-nodefaults', '-no-user-config', '-nographic', '-no-reboot',
    '-qmp', `unix:${escapeOptionValue(paths.qmpSocket)},server=on,wait=off`,
    '-pidfile', paths.pidFile,
    // The guest console goes to QEMU's stdout, a pipe the driver reads into a bounded
    // buffer (qemu.ts): a file would let the guest fill the host's tmpfs. signal=off:
    // console bytes are never Ctrl-C for QEMU.
    '-chardev', 'stdio,id=console,signal=off',
    '-serial', 'chardev:console',
    '-kernel', config.kernelPath,
    '-append', [...rootfsKernelParams(config.rootfs), ...config.kernelParams, ...channelParams].join(' '),
    '-device', 'virtio-rng-pci',
  ];
  if (template) {
    // share=on in the template: x-ignore-shared then leaves its RAM out of the saved
    // state (the file is the RAM). share=off in a clone: its writes stay its own.
    args.push(
      '-object', `memory-backend-file,id=${BOOT_RAM_ID},size=${config.memoryMiB}M,mem-path=${escapeOptionValue(template.memoryPath)},share=${template.role === 'template' ? 'on' : 'off'}`,
      // A new generation id in each clone: the guest kernel reseeds its RNG on the change,
      // or clones of one template would read the same "random" bytes.
      '-device', 'vmgenid,guid=auto',
    );
    // A clone waits, paused, for the template's state (migrate-incoming in qemu.ts).
    if (template.role === 'clone') args.push('-S', '-incoming', 'defer');
  } else if (sharedRam) {
    args.push('-object', `memory-backend-memfd,id=${BOOT_RAM_ID},size=${config.memoryMiB}M,share=on`);
  }
  // QEMU filters its own syscalls once set up: what a guest that took over device emulation can ask the host kernel.
  if (config.seccompSandbox) args.push('-sandbox', config.seccompSandbox);
  if (image) {
    // The host maps the image read-only and shared: guests read its pages straight from
    // the host page cache; unarmed tells the guest the NVDIMM cannot be written.
    args.push(
      '-object', `memory-backend-file,id=rootfs,mem-path=${escapeOptionValue(image.path)},size=${host.rootfsImageBytes},share=on,readonly=on,align=${NVDIMM_ALIGN}`,
      '-device', 'nvdimm,id=nv0,memdev=rootfs,unarmed=on',
    );
  } else {
    args.push('-initrd', config.rootfs.path);
  }

  const serialPorts = [
    // The debug console comes first: the guest learns port names in this order, so by
    // the time the agent finds its own port, the console's is known as well. Over vsock
    // it is vsock port 1026 instead.
    ...(config.debugConsole && !vsock ? [{ chardev: 'debugconsole', ...config.debugConsole }] : []),
    ...(channel.kind === 'virtio-serial' ? [{ chardev: 'agent', socketPath: channel.socketPath, portName: channel.portName }] : []),
  ];
  if (serialPorts.length > 0) args.push('-device', 'virtio-serial-pci,id=serial0');
  for (const port of serialPorts) {
    args.push(
      '-chardev', `socket,id=${port.chardev},path=${escapeOptionValue(port.socketPath)},server=on,wait=off`,
      '-device', `virtserialport,chardev=${port.chardev},name=${port.portName}`,
    );
  }
  if (channel.kind === 'vsock') args.push('-device', `vhost-vsock-pci,id=vsock0,guest-cid=${channel.guestCid}`);
  if (vsock) {
    args.push(
      '-chardev', `socket,id=vsock,path=${escapeOptionValue(vsockBackendPaths(config.workDir, channel.socketPath).vhostUserSocket)}`,
      '-device', `vhost-user-vsock-pci,id=${VSOCK_DEVICE_ID},chardev=vsock`,
    );
  }

  config.sharedDirectories.forEach((dir, index) => {
    const id = `fs${index}`;
    if (options.virtioFs) {
      args.push(
        '-chardev', `socket,id=${id},path=${escapeOptionValue(virtiofsSocket(config.workDir, index))}`,
        '-device', `vhost-user-fs-pci,chardev=${id},tag=${dir.tag},queue-size=1024`,
      );
      return;
    }
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

/**
 * `-m`: boot memory, plus (when the VM may grow, or has an NVDIMM) the slots and the
 * ceiling of the device memory area that hot-plugged DIMMs and the NVDIMM live in.
 */
function memoryOption(bootMiB: number, limits: VmSize, nvdimmBytes: number, hotplugSlots: number): string {
  const hotplugMiB = limits.memoryMiB - bootMiB;
  const nvdimmMiB = Math.ceil(nvdimmBytes / NVDIMM_ALIGN) * (NVDIMM_ALIGN / MiB);
  const slots = (hotplugMiB > 0 ? hotplugSlots : 0) + (nvdimmBytes > 0 ? 1 : 0);
  if (slots === 0) return `${bootMiB}M`;
  return `${bootMiB}M,slots=${slots},maxmem=${bootMiB + hotplugMiB + nvdimmMiB}M`;
}
