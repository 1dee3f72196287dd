import { spawn } from 'child_process';
import { processStartTime, ProcessRecord, readTrimmed, recordAlive } from '../lib/recorded-process';
import { waitFor } from '../tests/harness/wait';
import { vmmCommand } from './vmm-launch';

/** Dropping bounding-set capabilities takes CAP_SETPCAP. */
const asRoot = process.getuid?.() === 0 ? it : it.skip;

/**
 * A stand-in for a shim: a Node process that launches `sleep` as the shim launches a VMM
 * (detached, through vmmCommand) and reports its pid; then it is SIGKILLed, as a shim can be.
 */
async function launchUnderKilledSpawner(dieWithSpawner: boolean): Promise<ProcessRecord> {
  const [command, args] = vmmCommand('sleep', ['60'], { dieWithSpawner });
  const script = `const c = require('child_process').spawn(${JSON.stringify(command)}, ${JSON.stringify(args)}, { detached: true, stdio: 'ignore' }); c.on('spawn', () => console.log(c.pid)); setInterval(() => {}, 1000);`;
  const spawner = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const pid = await new Promise<number>((resolve, reject) => {
    spawner.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
    spawner.once('exit', (code) => reject(new Error(`the spawner exited (${code}) before it reported a pid`)));
  });
  // setpriv has exec'd sleep once its comm says so: only then is the death signal armed.
  await waitFor('setpriv to exec sleep', () => (readTrimmed(`/proc/${pid}/comm`) === 'sleep' ? true : undefined), 5000, 50);
  const record = { pid, startTime: processStartTime(pid)! };
  spawner.kill('SIGKILL');
  await new Promise((r) => spawner.once('exit', r));
  return record;
}

describe('vmmCommand', () => {
  it('drops the capabilities a VMM never needs, and joins the netns last, right before the VMM', () => {
    const [command, args] = vmmCommand('/usr/bin/qemu-system-x86_64', ['-S'], { netnsPath: '/var/run/netns/pod' });
    expect(command).toBe('setpriv');
    expect(args.slice(args.indexOf('--'))).toEqual(['--', 'nsenter', '--net=/var/run/netns/pod', '--', '/usr/bin/qemu-system-x86_64', '-S']);
    expect(args[args.indexOf('--bounding-set') + 1]).toContain('-sys_module');
    expect(args).not.toContain('--pdeathsig');
  });

  it('starts a VMM in a network namespace of its own with unshare, right before the VMM; never also in the pod netns', () => {
    const [, args] = vmmCommand('/usr/bin/qemu-system-x86_64', ['-S'], { ownNetns: true });
    expect(args.slice(args.indexOf('--'))).toEqual(['--', 'unshare', '--net', '--', '/usr/bin/qemu-system-x86_64', '-S']);
    expect(() => vmmCommand('qemu', [], { ownNetns: true, netnsPath: '/var/run/netns/pod' })).toThrow('not both');
  });

  asRoot('kills a VMM launched to die with its spawner when the spawner is killed', async () => {
    const vmm = await launchUnderKilledSpawner(true);
    await waitFor('the VMM to die with its spawner', () => (recordAlive(vmm) ? undefined : true), 5000, 50);
  }, 15_000);

  asRoot('leaves any other VMM running when its spawner is killed (the shim’s delete ends it)', async () => {
    const vmm = await launchUnderKilledSpawner(false);
    try {
      await new Promise((r) => setTimeout(r, 500));
      expect(recordAlive(vmm)).toBe(true);
    } finally {
      process.kill(vmm.pid, 'SIGKILL');
    }
  }, 15_000);
});
