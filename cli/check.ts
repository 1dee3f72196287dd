// `kata-ts-runtime check`: what this host can do, found by trying it. The decisive
// test boots the configured guest under each accelerator through the real QEMU
// driver and waits for the guest's init to speak: on some hosts /dev/kvm opens but
// guests hang (nested virtualization), which no capability flag reveals.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { guestRootfs, RuntimeConfig } from '../config/runtime-config';
import { Accelerator } from '../hypervisors/hypervisor';
import { QemuHypervisor } from '../hypervisors/qemu';
import { silentLogger } from '../lib/logger';

export type Verdict = 'PASS' | 'WARN' | 'FAIL';
export interface CheckLine {
  verdict: Verdict;
  name: string;
  detail: string;
}

/** Printed by the guest's /init once it runs (guest/init). */
const INIT_MARKER = /katats-init: (smoke check|agent-start) at/;

export async function bootProbe(config: RuntimeConfig, accelerator: Accelerator, timeoutMs: number): Promise<{ booted: boolean; seconds: number; detail: string }> {
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-check-'));
  fs.mkdirSync(path.join(workDir, 'shared'));
  const hypervisor = new QemuHypervisor(silentLogger());
  const started = Date.now();
  try {
    await hypervisor.start({
      id: `check-${accelerator}`,
      workDir,
      binaryPath: config.hypervisor.path,
      accelerator,
      kernelPath: config.hypervisor.kernel,
      rootfs: guestRootfs(config),
      kernelParams: ['console=ttyS0', 'panic=-1', 'reboot=t', 'quiet', 'katats.smoke=1'],
      memoryMiB: 512,
      vcpus: 1,
      agentChannel: { kind: 'virtio-serial', socketPath: path.join(workDir, 'agent.sock'), portName: 'agent.channel.0' },
      sharedDirectories: [{ tag: 'kataShared', hostPath: path.join(workDir, 'shared') }],
    });
    let exited = false;
    void hypervisor.exited.then(() => (exited = true));
    while (Date.now() - started < timeoutMs && !exited) {
      if (INIT_MARKER.test(hypervisor.consoleTail(64 * 1024))) return { booted: true, seconds: (Date.now() - started) / 1000, detail: '' };
      await new Promise((r) => setTimeout(r, 200));
    }
    const tail = hypervisor.consoleTail(300).trim().split('\n').pop() ?? '';
    return { booted: false, seconds: (Date.now() - started) / 1000, detail: exited ? `QEMU exited early${tail ? ` (console: ${tail})` : ''}` : `no sign of the guest's init within ${timeoutMs / 1000} s${tail ? ` (last console line: ${tail})` : ' (the console stayed empty)'}` };
  } catch (err) {
    return { booted: false, seconds: (Date.now() - started) / 1000, detail: (err as Error).message };
  } finally {
    await hypervisor.stop(0).catch(() => undefined);
    fs.rmSync(workDir, { recursive: true, force: true });
  }
}

function qemuVersion(binary: string): CheckLine {
  try {
    const version = execFileSync(binary, ['--version'], { encoding: 'utf8' }).split('\n')[0];
    return { verdict: 'PASS', name: 'qemu', detail: `${binary}: ${version}` };
  } catch (err) {
    return { verdict: 'FAIL', name: 'qemu', detail: `${binary} does not run (${(err as Error).message.split('\n')[0]}); install qemu-system-x86 or set hypervisor.qemu.path` };
  }
}

function deviceOpens(device: string): string | undefined {
  try {
    fs.closeSync(fs.openSync(device, 'r+'));
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  }
}

export async function runChecks(config: RuntimeConfig, opts: { kvmTimeoutMs: number; tcgTimeoutMs: number }): Promise<CheckLine[]> {
  const lines: CheckLine[] = [qemuVersion(config.hypervisor.path)];
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
    lines.push(probe.booted ? { verdict: 'PASS', name: 'kvm boot', detail: `a test guest reached its init in ${probe.seconds.toFixed(1)} s` } : { verdict: 'FAIL', name: 'kvm boot', detail: `/dev/kvm opens but a test guest did not boot: ${probe.detail.replace(/\.$/, '')}. Nested virtualization often looks like this; use accelerator = "tcg" here` });
  }
  if (canBoot) {
    const probe = await bootProbe(config, 'tcg', opts.tcgTimeoutMs);
    works.tcg = probe.booted;
    lines.push(probe.booted ? { verdict: 'PASS', name: 'tcg boot', detail: `a test guest reached its init in ${probe.seconds.toFixed(1)} s (software emulation)` } : { verdict: 'FAIL', name: 'tcg boot', detail: `a test guest did not boot: ${probe.detail}` });
  }
  const vsockError = deviceOpens('/dev/vhost-vsock');
  lines.push(vsockError ? { verdict: 'WARN', name: 'vhost-vsock', detail: `/dev/vhost-vsock is not usable (${vsockError}); the agent channel is virtio-serial` } : { verdict: 'PASS', name: 'vhost-vsock', detail: '/dev/vhost-vsock opens' });

  const configured = config.hypervisor.accelerator;
  const ok = works[configured];
  lines.push(ok ? { verdict: 'PASS', name: 'configuration', detail: `accelerator = "${configured}" boots guests` } : { verdict: 'FAIL', name: 'configuration', detail: `accelerator = "${configured}" ${ok === false ? 'does not boot guests here' : 'could not be tried'}${works.tcg && configured !== 'tcg' ? '; "tcg" works' : ''}` });
  return lines;
}

export function formatChecks(lines: CheckLine[]): string {
  // One line per check, so the columns stay greppable even when QEMU's stderr spans lines.
  const oneLine = (text: string) => text.replace(/\s*\n\s*/g, ' | ');
  return lines.map((l) => `${l.verdict.padEnd(5)} ${l.name.padEnd(14)} ${oneLine(l.detail)}`).join('\n') + '\n';
}
