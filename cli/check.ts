// `kata-ts-runtime check`: what this host can do, found by trying it. The decisive
// test boots the configured guest through the configured driver (under each
// accelerator, for QEMU) and waits for the guest's init to speak: on some hosts
// /dev/kvm opens but guests hang (nested virtualization), which no flag reveals.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { guestRootfs, RuntimeConfig, VMM_NAMES } from '../config/runtime-config';
import { createHypervisor } from '../hypervisors/factory';
import { Accelerator, GUEST_KERNEL_PARAMS, Hypervisor, HypervisorKind } from '../hypervisors/hypervisor';
import { silentLogger } from '../lib/logger';
import { describeKsm, HostKsm } from '../sandbox/ksm';
import { virtiofsdFlavour } from '../hypervisors/virtiofsd';
import { vsockBackendVersion } from '../hypervisors/vsock-backend';
import { agentChannelFor, SHARED_FS_TAG } from '../sandbox/sandbox';
import { AgentChannelHost, chooseAgentChannel, HOST_AGENT_CHANNEL } from '../hypervisors/qemu/agent-channel-choice';

export type Verdict = 'PASS' | 'WARN' | 'FAIL';
export interface CheckLine {
  verdict: Verdict;
  name: string;
  detail: string;
}

/** Printed by the guest's /init once it runs (guest/init). */
const INIT_MARKER = /katats-init: (smoke check|agent-start) at/;

/** How long the console pipe gets to deliver a guest's last words after its VMM exited. */
const CONSOLE_DRAIN_MS = 500;

/** The check line that names the VMM binary: Kata's names, which fit formatChecks' 14-character column. */
const VMM_LINE: Record<HypervisorKind, string> = { qemu: 'qemu', clh: 'clh', firecracker: 'firecracker' };

/** FAILs of these lines mean sandboxes cannot start with this configuration (exit status 1). */
export function hasFatalFailure(lines: CheckLine[]): boolean {
  const fatal = new Set(['configuration', 'guest image', 'ksm', 'shared fs', 'agent channel', ...Object.values(VMM_LINE)]);
  return lines.some((l) => l.verdict === 'FAIL' && fatal.has(l.name));
}

/** What the boot probe needs of a VMM driver (a seam for its unit test). */
export type ProbedHypervisor = Pick<Hypervisor, 'start' | 'stop' | 'exited' | 'consoleTail' | 'agentChannelKind'>;

export async function bootProbe(config: RuntimeConfig, accelerator: Accelerator, timeoutMs: number, hypervisor: ProbedHypervisor = createHypervisor({ ...config.hypervisor, ksm: config.runtime.ksm }, silentLogger())): Promise<{ booted: boolean; seconds: number; detail: string }> {
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-check-'));
  fs.mkdirSync(path.join(workDir, 'shared'));
  const started = Date.now();
  try {
    await hypervisor.start({
      id: `check-${accelerator}`,
      workDir,
      binaryPath: config.hypervisor.path,
      accelerator,
      kernelPath: config.hypervisor.kernel,
      rootfs: guestRootfs(config),
      kernelParams: [...GUEST_KERNEL_PARAMS, 'quiet', 'katats.smoke=1'],
      memoryMiB: 512,
      vcpus: 1,
      agentChannel: agentChannelFor(hypervisor.agentChannelKind, workDir),
      // What sandboxes get (Firecracker has no shared filesystem at all).
      sharedDirectories: config.hypervisor.kind === 'firecracker' ? [] : [{ tag: SHARED_FS_TAG, hostPath: path.join(workDir, 'shared') }],
    });
    let exited = false;
    void hypervisor.exited.then(() => (exited = true));
    const reachedInit = () => INIT_MARKER.test(hypervisor.consoleTail(64 * 1024));
    while (Date.now() - started < timeoutMs && !exited) {
      if (reachedInit()) return { booted: true, seconds: (Date.now() - started) / 1000, detail: '' };
      await new Promise((r) => setTimeout(r, 200));
    }
    // The smoke guest powers off once its check is done: on a busy host it can print the
    // marker and exit between two polls. What it wrote before exiting may still be in the
    // pipe when the exit is seen, so the console is read once more after a moment.
    if (exited) {
      await new Promise((r) => setTimeout(r, CONSOLE_DRAIN_MS));
      if (reachedInit()) return { booted: true, seconds: (Date.now() - started) / 1000, detail: '' };
    }
    const tail = hypervisor.consoleTail(300).trim().split('\n').pop() ?? '';
    return { booted: false, seconds: (Date.now() - started) / 1000, detail: exited ? `${VMM_NAMES[config.hypervisor.kind]} exited early${tail ? ` (console: ${tail})` : ''}` : `no sign of the guest's init within ${timeoutMs / 1000} s${tail ? ` (last console line: ${tail})` : ' (the console stayed empty)'}` };
  } catch (err) {
    return { booted: false, seconds: (Date.now() - started) / 1000, detail: (err as Error).message };
  } finally {
    await hypervisor.stop(0).catch(() => undefined);
    fs.rmSync(workDir, { recursive: true, force: true });
  }
}

const PACKAGES: Record<HypervisorKind, string> = { qemu: 'qemu-system-x86', clh: 'cloud-hypervisor', firecracker: 'firecracker' };

function vmmVersion(kind: HypervisorKind, binary: string): CheckLine {
  const name = VMM_LINE[kind];
  try {
    const version = execFileSync(binary, ['--version'], { encoding: 'utf8' }).split('\n')[0];
    return { verdict: 'PASS', name, detail: `${binary}: ${version}` };
  } catch (err) {
    return { verdict: 'FAIL', name, detail: `${binary} does not run (${(err as Error).message.split('\n')[0]}); install ${PACKAGES[kind]} or set hypervisor.${kind}.path` };
  }
}

/** How sandboxes share container files with their guest, and whether what that needs is here. */
export async function sharedFsCheck(config: RuntimeConfig): Promise<CheckLine> {
  const h = config.hypervisor;
  if (h.kind === 'firecracker') return { verdict: 'WARN', name: 'shared fs', detail: 'none: Firecracker has no shared filesystem' };
  if (h.sharedFs === 'virtio-9p') return { verdict: 'PASS', name: 'shared fs', detail: "virtio-9p (QEMU's own 9p server: no daemon, guest RAM private); shared_fs = \"virtio-fs\" would use virtiofsd" };
  try {
    const flavour = await virtiofsdFlavour(h.virtioFsDaemon);
    const version = execFileSync(h.virtioFsDaemon, ['--version'], { encoding: 'utf8', timeout: 10_000 }).split('\n')[0];
    return { verdict: 'PASS', name: 'shared fs', detail: `virtio-fs through ${h.virtioFsDaemon} (${flavour === 'c' ? "QEMU's C virtiofsd" : 'the Rust virtiofsd'}: ${version}), cache ${h.virtioFsCache}, guest RAM shared` };
  } catch (err) {
    return { verdict: 'FAIL', name: 'shared fs', detail: `virtio-fs is configured, but ${(err as Error).message}: sandboxes will not start` };
  }
}

/** How the shim reaches the agent, and whether what that needs is here. */
export async function agentChannelCheck(config: RuntimeConfig, host: AgentChannelHost = HOST_AGENT_CHANNEL): Promise<CheckLine> {
  const h = config.hypervisor;
  if (h.kind !== 'qemu') return { verdict: 'PASS', name: 'agent channel', detail: `hybrid vsock, ${VMM_NAMES[h.kind]}'s own vsock device` };
  const choice = chooseAgentChannel(h.agentChannel, { vsockBackend: h.vsockBackend, ksm: config.runtime.ksm }, host);
  // Kernel vhost-vsock would need AF_VSOCK in the shim, which Node lacks: said once, here.
  const kernelVsock = 'kernel vhost-vsock is not used (Node has no AF_VSOCK to dial a guest CID)';
  if (choice.channel === 'virtio-serial') {
    const alternative = h.agentChannel === 'virtio-serial' ? '; agent_channel = "hybrid-vsock" would use vhost-device-vsock' : '';
    return { verdict: 'PASS', name: 'agent channel', detail: `virtio-serial (no daemon, guest RAM private): ${choice.reason}${alternative}; ${kernelVsock}` };
  }
  try {
    const version = await vsockBackendVersion(h.vsockBackend);
    return { verdict: 'PASS', name: 'agent channel', detail: `hybrid vsock through ${h.vsockBackend} (${version}): ${choice.reason}; agent on vsock port 1024, debug console on 1026, guest RAM shared; ${kernelVsock}` };
  } catch (err) {
    return { verdict: 'FAIL', name: 'agent channel', detail: `${choice.reason}, but ${(err as Error).message}: sandboxes will not start` };
  }
}

/** The host's KSM as it is, and what the configuration will make of it. */
export function ksmCheck(config: RuntimeConfig, ksm: HostKsm): CheckLine {
  const mode = config.runtime.ksm;
  const state = ksm.state();
  const now = describeKsm(state);
  if (mode === 'unchanged') return { verdict: 'PASS', name: 'ksm', detail: `${now}; ksm = "unchanged" leaves it so` };
  if (!state.available) {
    return mode === 'on' ? { verdict: 'FAIL', name: 'ksm', detail: `${now}, but ksm = "on": sandboxes will not start` } : { verdict: 'PASS', name: 'ksm', detail: `${now}; nothing is merged, as ksm = "off" asks` };
  }
  const wanted = mode === 'on' ? 1 : 0;
  if (state.run === wanted) return { verdict: 'PASS', name: 'ksm', detail: `${now}; as ksm = "${mode}" wants` };
  if (!state.writable) return { verdict: 'FAIL', name: 'ksm', detail: `${now}; ksm = "${mode}" needs run = ${wanted}, but ${ksm.dir}/run is not writable here: sandboxes will not start` };
  return { verdict: 'PASS', name: 'ksm', detail: `${now}; each sandbox start sets run = ${wanted} (ksm = "${mode}")` };
}

function deviceOpens(device: string): string | undefined {
  try {
    fs.closeSync(fs.openSync(device, 'r+'));
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  }
}

export async function runChecks(config: RuntimeConfig, opts: { kvmTimeoutMs: number; tcgTimeoutMs: number; ksm?: HostKsm }): Promise<CheckLine[]> {
  const kind = config.hypervisor.kind;
  const lines: CheckLine[] = [vmmVersion(kind, config.hypervisor.path)];
  const rootfs = guestRootfs(config);
  const guestFiles = [config.hypervisor.kernel, rootfs.path].filter((f) => !fs.existsSync(f));
  lines.push(guestFiles.length === 0 ? { verdict: 'PASS', name: 'guest image', detail: `${config.hypervisor.kernel}, ${rootfs.path} (${rootfs.kind})` } : { verdict: 'FAIL', name: 'guest image', detail: `missing ${guestFiles.join(', ')}; build it with 'make guest' or set hypervisor.qemu.kernel and image (or initrd)` });

  const works: Partial<Record<Accelerator, boolean>> = {};
  const kvmError = deviceOpens('/dev/kvm');
  lines.push(kvmError ? { verdict: 'WARN', name: 'kvm device', detail: `/dev/kvm cannot be opened (${kvmError})` } : { verdict: 'PASS', name: 'kvm device', detail: '/dev/kvm opens' });
  const canBoot = lines[0].verdict === 'PASS' && guestFiles.length === 0;
  if (!kvmError && canBoot) {
    const probe = await bootProbe(config, 'kvm', opts.kvmTimeoutMs);
    works.kvm = probe.booted;
    const advice = kind === 'qemu' ? 'use accelerator = "tcg" here' : `${VMM_NAMES[kind]} needs KVM; only QEMU can emulate a CPU (accelerator = "tcg")`;
    lines.push(probe.booted ? { verdict: 'PASS', name: 'kvm boot', detail: `a test guest reached its init in ${probe.seconds.toFixed(1)} s` } : { verdict: 'FAIL', name: 'kvm boot', detail: `/dev/kvm opens but a test guest did not boot: ${probe.detail.replace(/\.$/, '')}. Nested virtualization often looks like this; ${advice}` });
  }
  if (canBoot && kind === 'qemu') {
    const probe = await bootProbe(config, 'tcg', opts.tcgTimeoutMs);
    works.tcg = probe.booted;
    lines.push(probe.booted ? { verdict: 'PASS', name: 'tcg boot', detail: `a test guest reached its init in ${probe.seconds.toFixed(1)} s (software emulation)` } : { verdict: 'FAIL', name: 'tcg boot', detail: `a test guest did not boot: ${probe.detail}` });
  }
  if (kind === 'qemu') {
    const vsockError = deviceOpens('/dev/vhost-vsock');
    // kata-ts cannot use it yet (Node cannot dial AF_VSOCK): the line is there for what a host offers.
    lines.push(vsockError ? { verdict: 'WARN', name: 'vhost-vsock', detail: `/dev/vhost-vsock is not usable (${vsockError}); kata-ts does not need it (agent channel below)` } : { verdict: 'PASS', name: 'vhost-vsock', detail: '/dev/vhost-vsock opens; kata-ts does not use it yet (agent channel below)' });
  } else {
    lines.push({ verdict: 'PASS', name: 'vhost-vsock', detail: `not needed: ${VMM_NAMES[kind]} reaches the agent over hybrid vsock, a device of its own` });
  }
  lines.push(await agentChannelCheck(config));
  lines.push(await sharedFsCheck(config));
  lines.push(ksmCheck(config, opts.ksm ?? new HostKsm()));
  lines.push(configurationLine(config, works));
  return lines;
}

/** Why sandboxes cannot start under a VMM yet, whatever this host can do: the driver boots VMs, the guest side is missing. */
const NOT_YET: Partial<Record<HypervisorKind, string>> = {
  firecracker: 'Firecracker has no shared filesystem for container rootfs, and rootfs as block devices is not implemented',
};

/** What a working host still has to take on trust under a VMM. */
const UNTESTED: Partial<Record<HypervisorKind, string>> = {
  clh: "no pod has run under Cloud Hypervisor in kata-ts's own tests, which run where it cannot be installed: its API requests, its virtiofsd and the guest's vsock side are tested, a whole pod under it is not",
};

export function configurationLine(config: RuntimeConfig, works: Partial<Record<Accelerator, boolean>>): CheckLine {
  const kind = config.hypervisor.kind;
  const missing = NOT_YET[kind];
  if (missing) return { verdict: 'FAIL', name: 'configuration', detail: `[hypervisor.${kind}]: sandboxes cannot start yet: ${missing}${works.kvm ? ' (a test guest did boot)' : ''}` };
  const configured = config.hypervisor.accelerator;
  const ok = works[configured];
  const untested = UNTESTED[kind];
  if (ok) return untested ? { verdict: 'WARN', name: 'configuration', detail: `accelerator = "${configured}" boots guests, but ${untested}` } : { verdict: 'PASS', name: 'configuration', detail: `accelerator = "${configured}" boots guests` };
  return { verdict: 'FAIL', name: 'configuration', detail: `accelerator = "${configured}" ${ok === false ? 'does not boot guests here' : 'could not be tried'}${works.tcg && configured !== 'tcg' ? '; "tcg" works' : ''}` };
}

export function formatChecks(lines: CheckLine[]): string {
  // One line per check, so the columns stay greppable even when QEMU's stderr spans lines.
  const oneLine = (text: string) => text.replace(/\s*\n\s*/g, ' | ');
  return lines.map((l) => `${l.verdict.padEnd(5)} ${l.name.padEnd(14)} ${oneLine(l.detail)}`).join('\n') + '\n';
}
