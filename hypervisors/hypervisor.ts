// The seam between a sandbox and the VMM that runs it. A sandbox only ever talks to
// this interface; every driver (hypervisors/<name>/) implements it.

export type Accelerator = 'kvm' | 'tcg';

/** The VMMs there is a driver for, by Kata's configuration names (`[hypervisor.<kind>]`). */
export const HYPERVISOR_KINDS = ['qemu', 'clh', 'firecracker'] as const;

/**
 * What every guest kernel is booted with: the console on the first serial port, a panic
 * or reboot ends the VM, and no check of the IO-APIC timer at boot. That check waits a
 * few ticks for a timer interrupt and panics without one ("IO-APIC + timer doesn't
 * work!"), which a vCPU starved of host CPU (TCG beside other VMs) can fail; Kata boots
 * its guests with `no_timer_check` for the same reason.
 */
export const GUEST_KERNEL_PARAMS: readonly string[] = ['console=ttyS0', 'panic=-1', 'reboot=t', 'no_timer_check'];
export type HypervisorKind = (typeof HYPERVISOR_KINDS)[number];

/** How the host reaches the guest agent. */
export type AgentChannel =
  /** virtio-serial port; the VMM listens on a Unix socket on the host side. */
  | { kind: 'virtio-serial'; socketPath: string; portName: string }
  /** AF_VSOCK (vhost-vsock on the host). */
  | { kind: 'vsock'; guestCid: number; port: number }
  /** Firecracker/Cloud Hypervisor: a Unix socket speaking `CONNECT <port>\n`. */
  | { kind: 'hybrid-vsock'; socketPath: string; port: number };

/**
 * The guest's root filesystem. An initrd is copied into guest RAM; an image (ext4 with
 * a DAX header, built by guest/build.sh) stays in the host page cache: QEMU maps it as
 * an NVDIMM that the guest mounts with -o dax, so every VM shares one copy.
 */
export type GuestRootfs = { kind: 'initrd'; path: string } | { kind: 'image'; path: string };

/** How a shared directory reaches the guest. */
export type SharedFsKind = 'virtio-9p' | 'virtio-fs';

export interface SharedDirectory {
  /** The mount tag the guest mounts it by (virtio-9p or virtio-fs). */
  tag: string;
  hostPath: string;
}

export interface VmConfig {
  /** Sandbox id; names the VM. */
  id: string;
  /** Private directory for the VMM's sockets, pid file and console log. */
  workDir: string;
  binaryPath: string;
  accelerator: Accelerator;
  kernelPath: string;
  rootfs: GuestRootfs;
  kernelParams: string[];
  memoryMiB: number;
  vcpus: number;
  /**
   * Whether guest memory may be merged by the host's KSM (madvise MADV_MERGEABLE);
   * unset keeps the VMM's default (QEMU merges, Cloud Hypervisor does not).
   */
  memoryMerge?: boolean;
  /** QEMU's -sandbox value (its own seccomp filter); undefined or '' for none. */
  seccompSandbox?: string;
  /**
   * Hot-plug limits: resize() may grow the VM up to these (default: the boot size, no
   * growth). Every driver reserves the room at boot; none can raise them later.
   */
  maxMemoryMiB?: number;
  maxVcpus?: number;
  agentChannel: AgentChannel;
  /**
   * A second guest port for a root shell (`kata-ts-runtime exec`): the VMM listens on
   * `socketPath`, created mode 0600, and the guest sees a virtio-serial port `portName`.
   */
  debugConsole?: { socketPath: string; portName: string };
  sharedDirectories: SharedDirectory[];
  /** The pod network: the VMM runs inside `netnsPath` and gets one virtio NIC per tap there. */
  network?: VmNetwork;
}

/** A pod's network namespace and the NICs the VM gets there, one per tap. */
export interface VmNetwork {
  netnsPath: string;
  nics: NicConfig[];
}

/** A pod NIC: the tap in the pod's netns, and the MAC the guest's interface gets. */
export interface NicConfig {
  tapName: string;
  mac: string;
}

/**
 * A device for the VM. Added before start() it is part of the boot configuration;
 * added after, it is hot-plugged, where the VMM can do that.
 */
export type VmDevice =
  | { kind: 'block'; id: string; hostPath: string; readOnly: boolean }
  | { kind: 'network'; id: string; tapName: string; macAddress?: string };

/** A VM's vCPU count and memory size. */
export interface VmSize {
  vcpus: number;
  memoryMiB: number;
}

/** New vCPU count and/or memory size for a running VM. */
export type VmResize = Partial<VmSize>;

export interface VmExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A template's files (sandbox/vm-templates.ts): its RAM, and its saved device and CPU state. */
export interface TemplateFiles {
  memoryPath: string;
  statePath: string;
}

export interface Hypervisor {
  readonly name: string;
  /** The kind of VmConfig.agentChannel start() takes: the one host↔guest channel this VMM offers the agent. */
  readonly agentChannelKind: AgentChannel['kind'];
  /** Launches the VM and returns once the VMM is controllable (the guest may still boot). */
  start(config: VmConfig): Promise<void>;
  /**
   * Stops the VM: waits up to `graceMs` for the guest to power off by itself (the agent
   * ends it after DestroySandbox), then asks the VMM to quit, then kills it.
   */
  stop(graceMs: number): Promise<void>;
  /** The VMM process id while it runs. */
  pid(): number | undefined;
  /** The filesystem the guest mounts sharedDirectories with; absent: virtio-9p. */
  readonly sharedFsKind?: SharedFsKind;
  /** Settles when the VMM process has exited, for whatever reason. */
  readonly exited: Promise<VmExit>;
  /** Recent console output of the guest, for error messages when boot fails. */
  consoleTail(maxBytes?: number): string;
  /**
   * Settles when the agent channel may be dialled, or when `signal` aborts; absent: at
   * once. (QEMU over hybrid vsock: not while the guest starts its vsock device.)
   */
  agentChannelReady?(signal: AbortSignal): Promise<void>;

  // Optional capabilities: a driver whose VMM cannot do one leaves it out.
  /** Freezes the guest's vCPUs. */
  pause?(): Promise<void>;
  resume?(): Promise<void>;
  addDevice?(device: VmDevice): Promise<void>;
  /** Hot-unplugs a device added after start(); settles once the guest let go of it. */
  removeDevice?(id: string): Promise<void>;
  /**
   * Hot-plugs vCPUs/memory up to VmConfig.maxVcpus/maxMemoryMiB and returns the size
   * the VM has then: memory grows in steps of the VMM's or guest's granularity, so it
   * may differ a little from the target.
   */
  resize?(target: VmResize): Promise<VmSize>;

  // VM templates (sandbox/vm-templates.ts): all six, or none.
  /** Why a VM like `config` cannot be, or start from, a template; undefined when it can. */
  templateRefusal?(config: VmConfig): string | undefined;
  /**
   * What a template of `config` is made of, as the guest sees it (for QEMU: its command
   * line, host paths aside, and the binary). Clones may only come from a template with
   * the same identity.
   */
  templateIdentity?(config: VmConfig): string;
  /**
   * Boots a VM whose RAM is `files.memoryPath`, to be saved once its agent answers.
   * `onSpawned` gets the VMM's pid as soon as it exists, long before it answers: the
   * maker records it, so whoever takes a dead maker's lock over can end that VMM.
   */
  startTemplate?(config: VmConfig, files: TemplateFiles, onSpawned: (pid: number) => void): Promise<void>;
  /** Saves the (idle) template VM's state to `files.statePath` and ends it. */
  saveTemplate?(): Promise<void>;
  /**
   * Starts a VM from a saved template (its RAM file, and `state`: the saved state's
   * bytes, as the caller checked them) and runs it, without NICs (plugNics adds the
   * pod's; config.network must be undefined). Fails (leaving nothing running) with
   * TemplateRestoreError when QEMU refuses the state (not when it is killed or times out).
   * `memoryFd`: the template's RAM file, opened by the caller (with the state read under
   * the template's lock, so both are one template's even if it is replaced while the VM
   * starts); used instead of `files.memoryPath`. `dieWithSpawner`: the VMM is killed when
   * the process that started it dies (a spare shim's VM, which nobody else knows of
   * until a pod claims it).
   */
  startClone?(config: VmConfig, files: TemplateFiles, state: Buffer, opts?: { memoryFd?: number; dieWithSpawner?: boolean }): Promise<void>;
  /**
   * Hot-plugs the pod's NICs into a running clone (none: only checks that it still
   * runs). A clone needs nothing of its pod to start: its VMM runs in an empty network
   * namespace of its own, never the pod's (startClone takes no config.network), so it
   * may start before the pod's network is known. Each NIC's tap, made by the caller in
   * `network.netnsPath`, is moved into the VMM's namespace for the VMM to open, then
   * back, where it arrives down: the caller wires it then (PodNetwork.wire). A tap that
   * cannot be moved back ends with the VMM's namespace.
   *
   * A NIC plugged ahead (prePlugNic) serves the first: its tap goes to the pod's
   * namespace under the first NIC's tap name (the caller made no tap of that name
   * there), and the guest's NIC keeps the MAC it was plugged with until the agent gives
   * it the pod's (UpdateInterface plugged_hw_addr).
   */
  plugNics?(network: VmNetwork | undefined): Promise<void>;
  /**
   * Plugs a NIC into a running clone before its pod exists (a spare's VM), with a tap of
   * its own in the VMM's namespace and a MAC of the driver's choosing (returned), so
   * that the guest's PCI hot-plug and driver probe are done before a pod takes the VM.
   * A pod without a network leaves it unused (down, its tap in the VMM's empty
   * namespace); the driver unplugs it if another device needs its port.
   */
  prePlugNic?(): Promise<string>;
}
