// Boots the built guest straight through the QEMU driver and the agent client, with no
// containerd in between: for tests and benchmarks that compare kernels and rootfs
// formats (our kernel with the DAX image or the initrd, Debian's kernel with the initrd).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Accelerator, GUEST_KERNEL_PARAMS, GuestRootfs, VmConfig } from '../../hypervisors/hypervisor';
import { QemuHypervisor } from '../../hypervisors/qemu';
import { silentLogger } from '../../lib/logger';
import { DEBUG_CONSOLE_PORT_NAME } from '../../lib/debug-console';
import { GuestDetails, TtrpcAgentClient } from '../../sandbox/agent-client';
import { agentChannelFor, Sandbox } from '../../sandbox/sandbox';

import { GUEST_CURRENT } from './repo';

export { GUEST_CURRENT };

export interface GuestVariant {
  name: string;
  kernel: string;
  rootfs: GuestRootfs;
}

/** The variants a built guest directory offers; `dir` is resolved once (a rebuild swaps `current`). */
export function guestVariants(dir = GUEST_CURRENT): Record<'dax' | 'initrd' | 'debian', GuestVariant> {
  const image = fs.realpathSync(dir);
  const file = (name: string): string => {
    const p = path.join(image, name);
    if (!fs.existsSync(p)) throw new Error(`${p} missing: run 'make guest' first`);
    return p;
  };
  return {
    dax: { name: 'our kernel + rootfs.img (NVDIMM, DAX)', kernel: file('vmlinux'), rootfs: { kind: 'image', path: file('rootfs.img') } },
    initrd: { name: 'our kernel + initrd.img', kernel: file('vmlinux'), rootfs: { kind: 'initrd', path: file('initrd.img') } },
    debian: { name: "Debian's kernel + initrd.img", kernel: file('vmlinux-debian'), rootfs: { kind: 'initrd', path: file('initrd.img') } },
  };
}

export interface BootedGuest {
  hypervisor: QemuHypervisor;
  agent: TtrpcAgentClient;
  details: GuestDetails;
  /** From QEMU's start to the agent's first answer. */
  readyMs: number;
  workDir: string;
  stop(): Promise<void>;
}

export interface BootOptions {
  accelerator?: Accelerator;
  memoryMiB?: number;
  /** Hot-plug limits (VmConfig.maxVcpus / maxMemoryMiB); default: no growth. */
  maxVcpus?: number;
  maxMemoryMiB?: number;
  kernelParams?: string[];
  bootTimeoutMs?: number;
  callTimeoutMs?: number;
  /** Set: the agent is reached over hybrid vsock through this vhost-device-vsock (agent_channel = "hybrid-vsock"). */
  vsockBackend?: string;
  /** The debug console (virtio-serial port, or vsock port 1026 with vsockBackend). */
  debugConsole?: boolean;
  /** [hypervisor.qemu] tcg_tb_size: QEMU's translated-code buffer, in MiB. */
  tcgTbSizeMiB?: number;
}

/** Boots `variant` to agent-ready; on failure nothing is left running. */
export async function bootToAgent(variant: GuestVariant, options: BootOptions = {}): Promise<BootedGuest> {
  const vm = guestVmConfig('kt-guest-', variant, options, ['quiet']);
  const workDir = vm.workDir;
  const hypervisor = new QemuHypervisor(silentLogger(), { vsockBackend: options.vsockBackend, tcgTbSizeMiB: options.tcgTbSizeMiB });
  const started = Date.now();
  const stop = async (): Promise<void> => {
    await hypervisor.stop(0).catch(() => undefined);
    fs.rmSync(workDir, { recursive: true, force: true });
  };
  try {
    await hypervisor.start(vm);
    const { agent, details } = await TtrpcAgentClient.connect(vm.agentChannel, {
      bootTimeoutMs: options.bootTimeoutMs ?? 180_000,
      callTimeoutMs: options.callTimeoutMs ?? 30_000,
      vmExited: hypervisor.exited,
      logger: silentLogger(),
      channelReady: (signal) => hypervisor.agentChannelReady(signal),
    });
    const readyMs = Date.now() - started;
    return {
      hypervisor,
      agent,
      details,
      readyMs,
      workDir,
      stop: async () => {
        agent.close();
        await stop();
      },
    };
  } catch (err) {
    const console = hypervisor.consoleTail(1500);
    await stop();
    throw new Error(`${variant.name}: ${(err as Error).message}\nguest console:\n${console}`);
  }
}

/**
 * Boots `variant` with the guest's built-in smoke check instead of the agent (guest/init:
 * 9p share, a crun container, node) and returns the console once it says SMOKE-OK.
 */
export async function bootToSmokeCheck(variant: GuestVariant, options: BootOptions = {}): Promise<string> {
  const vm = guestVmConfig('kt-smoke-', variant, options, ['katats.smoke=1']);
  const hypervisor = new QemuHypervisor(silentLogger(), { vsockBackend: options.vsockBackend });
  try {
    await hypervisor.start(vm);
    let exited = false;
    void hypervisor.exited.then(() => (exited = true));
    const deadline = Date.now() + (options.bootTimeoutMs ?? 180_000);
    for (;;) {
      const console = hypervisor.consoleTail(256 * 1024);
      if (/SMOKE-OK/.test(console)) return console;
      if (/SMOKE-FAIL/.test(console) || exited || Date.now() > deadline) {
        throw new Error(`${variant.name}: the smoke check did not pass${exited ? ' (QEMU exited)' : ''}; console:\n${console.slice(-3000)}`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    await hypervisor.stop(0).catch(() => undefined);
    fs.rmSync(vm.workDir, { recursive: true, force: true });
  }
}

/** A VmConfig as the sandbox makes one (9p share, agent on virtio-serial or hybrid vsock), in a fresh workDir. */
function guestVmConfig(prefix: string, variant: GuestVariant, options: BootOptions, params: string[]): VmConfig {
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.mkdirSync(path.join(workDir, 'shared'));
  return {
    id: path.basename(workDir),
    workDir,
    binaryPath: 'qemu-system-x86_64',
    accelerator: options.accelerator ?? 'tcg',
    kernelPath: variant.kernel,
    rootfs: variant.rootfs,
    kernelParams: [...GUEST_KERNEL_PARAMS, ...params, ...(options.kernelParams ?? [])],
    memoryMiB: options.memoryMiB ?? 512,
    vcpus: 1,
    maxVcpus: options.maxVcpus,
    maxMemoryMiB: options.maxMemoryMiB,
    agentChannel: agentChannelFor(options.vsockBackend ? 'hybrid-vsock' : 'virtio-serial', workDir),
    debugConsole: options.debugConsole ? { socketPath: Sandbox.debugConsoleSocket(workDir), portName: DEBUG_CONSOLE_PORT_NAME } : undefined,
    sharedDirectories: [{ tag: 'kataShared', hostPath: path.join(workDir, 'shared') }],
  };
}

export interface Mapping {
  /** What is mapped: a file path, or '' for anonymous memory. */
  name: string;
  /** All in KiB. */
  size: number;
  rss: number;
  sharedClean: number;
  privateClean: number;
  privateDirty: number;
}

/** The mappings of /proc/<pid>/smaps. */
export function mappingsOf(pid: number): Mapping[] {
  const out: Mapping[] = [];
  for (const line of fs.readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      out.push({ name: head[3], size: (parseInt(head[2], 16) - parseInt(head[1], 16)) / 1024, rss: 0, sharedClean: 0, privateClean: 0, privateDirty: 0 });
      continue;
    }
    const field = /^(Rss|Shared_Clean|Private_Clean|Private_Dirty):\s+(\d+) kB/.exec(line);
    const current = out[out.length - 1];
    if (field && current) {
      const key = ({ Rss: 'rss', Shared_Clean: 'sharedClean', Private_Clean: 'privateClean', Private_Dirty: 'privateDirty' } as const)[field[1] as 'Rss'];
      current[key] = Number(field[2]);
    }
  }
  return out;
}

/** The mapping of `file` in process `pid`, if it maps it. */
export function mappingOf(pid: number, file: string): Mapping | undefined {
  return mappingsOf(pid).find((m) => m.name === file);
}

/**
 * How much of a QEMU process's guest RAM is resident, in KiB: its anonymous mapping of
 * exactly the VM's memory size (QEMU maps a small q35 guest's RAM in one piece).
 */
export function guestRamKiB(pid: number, memoryMiB: number): number {
  const ram = mappingsOf(pid).filter((m) => m.name === '' && m.size === memoryMiB * 1024);
  if (ram.length !== 1) throw new Error(`QEMU ${pid}: expected one ${memoryMiB} MiB anonymous mapping for guest RAM, found ${ram.length}`);
  return ram[0].rss;
}

/** A process's memory in KiB from smaps_rollup: resident, proportional, and private (USS). */
export function memoryOf(pid: number): { rss: number; pss: number; uss: number } {
  const text = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);
  return { rss: field('Rss'), pss: field('Pss'), uss: field('Private_Clean') + field('Private_Dirty') };
}
