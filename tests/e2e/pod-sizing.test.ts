// Pod sizing through containerd: a container's memory limit and CPU quota grow its VM
// (vCPU and memory hot-plug), and a Task Update that raises them grows it again; an
// enabled io.katacontainers.config.hypervisor.default_memory annotation sets the boot
// size of its pod's VM, and one the configuration does not enable is refused. The
// guest's own counts are read inside the container: MemTotal from /proc/meminfo and
// the online CPUs from sysfs.
import * as fs from 'fs';
import * as path from 'path';
import { HostSnapshot, snapshotHost, waitForNoLeaks } from '../harness/leaks';
import { updateTaskResources } from '../harness/containerd-api';
import { builtGuest, expectCtrOk, KataEnv, RUNTIME, sandboxWorkDir, startKataEnv } from './kata-env';

jest.setTimeout(600_000);
const VM_MS = 240_000;
const MiB = 1024 * 1024;
const REPORT = 'grep MemTotal /proc/meminfo; cat /sys/devices/system/cpu/online';
const DEFAULT_MEMORY_ANNOTATION = 'io.katacontainers.config.hypervisor.default_memory';

interface GuestSize {
  memTotalMiB: number;
  onlineCpus: number;
}

/** "MemTotal: 1000 kB" and a CPU list such as "0-2" or "0,2-3". */
function parseReport(stdout: string): GuestSize {
  const kb = /^MemTotal:\s+(\d+) kB$/m.exec(stdout);
  const list = stdout.trim().split('\n').at(-1) ?? '';
  if (!kb || !/^[\d,-]+$/.test(list)) throw new Error(`unexpected guest report: ${JSON.stringify(stdout)}`);
  const onlineCpus = list.split(',').reduce((sum, range) => {
    const [first, last = first] = range.split('-').map(Number);
    return sum + last - first + 1;
  }, 0);
  return { memTotalMiB: Number(kb[1]) / 1024, onlineCpus };
}

describe('VM sizing from container resources', () => {
  let env: KataEnv;
  let baseline: HostSnapshot;
  /** The guest of a container without limits: the VM at its boot size. */
  let bootSize: GuestSize;
  const ctr = (args: string[]) => env.containerd.ctr(args, { timeoutMs: VM_MS });

  async function guestSize(id: string, execId: string): Promise<GuestSize> {
    const result = await ctr(['task', 'exec', '--exec-id', execId, id, 'sh', '-c', REPORT]);
    expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' });
    return parseReport(result.stdout);
  }

  beforeAll(async () => {
    // Boot size 1 vCPU / 1024 MiB (kata-env's default); room to grow to 3 vCPUs / 2 GiB;
    // a pod may choose its boot memory (enable_annotations).
    env = await startKataEnv({ hypervisor: { vcpus: 1, maxVcpus: 3, maxMemoryMiB: 2048, enableAnnotations: ['default_memory'] } });
    baseline = await snapshotHost({ dirs: [env.stateDir, env.containerd.state] });
    const plain = await ctr(['run', '--rm', '--runtime', RUNTIME, env.image, 'size-plain', 'sh', '-c', REPORT]);
    expectCtrOk(plain, () => env.containerd.logs(), 'size-plain');
    expect({ code: plain.code, stderr: plain.stderr }).toEqual({ code: 0, stderr: '' });
    bootSize = parseReport(plain.stdout);
  });

  afterAll(async () => {
    await env?.stop();
  });

  it('a container without limits leaves the VM at its boot size', () => {
    expect(bootSize.onlineCpus).toBe(1);
    // The kernel keeps some of the 1024 MiB for itself.
    expect(bootSize.memTotalMiB).toBeGreaterThan(768);
    expect(bootSize.memTotalMiB).toBeLessThan(1024);
  });

  it('an enabled default_memory annotation boots the pod\'s VM with that memory', async () => {
    const run = await ctr(['run', '--rm', '--runtime', RUNTIME, '--annotation', `${DEFAULT_MEMORY_ANNOTATION}=1536`, env.image, 'size-annotated', 'sh', '-c', REPORT]);
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    const annotated = parseReport(run.stdout);
    // 512 MiB more than the configuration's 1024 MiB; the kernel keeps a little of it (page structs).
    expect(annotated.memTotalMiB - bootSize.memTotalMiB).toBeGreaterThan(480);
    expect(annotated.memTotalMiB - bootSize.memTotalMiB).toBeLessThanOrEqual(512);
    expect(annotated.onlineCpus).toBe(1);
  });

  it('a default_memory annotation the configuration does not enable is refused before any VM', async () => {
    // The same guest through a Kata-style file (ctr's runtime options) that enables default_vcpus only.
    const { kernel, image } = builtGuest();
    const q = JSON.stringify;
    const file = path.join(path.dirname(env.configPath), 'vcpus-only.toml');
    fs.writeFileSync(file, [
      '[hypervisor.qemu]', 'accelerator = "tcg"', `kernel = ${q(kernel)}`, `image = ${q(image)}`, 'default_maxmemory = 2048', 'enable_annotations = ["default_vcpus"]',
      '[agent.kata]', 'dial_timeout = 180',
      '[runtime]', `state_dir = ${q(env.stateDir)}`, '',
    ].join('\n'));
    const id = 'size-refused';
    const run = await ctr(['run', '--rm', '--runtime', RUNTIME, '--runtime-config-path', file, '--annotation', `${DEFAULT_MEMORY_ANNOTATION}=1536`, env.image, id, 'true']);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain(`annotation ${DEFAULT_MEMORY_ANNOTATION} is not enabled: no entry of enable_annotations in [hypervisor.qemu] of ${file} matches "default_memory"`);
    expect(fs.existsSync(sandboxWorkDir(env.stateDir, env.containerd.namespace, id))).toBe(false);
    await ctr(['containers', 'rm', id]); // in case ctr kept the record of the container it could not start
  });

  describe('a container with --memory-limit 256 MiB and --cpus 1', () => {
    const id = 'size-grow';

    beforeAll(async () => {
      const started = await ctr(['run', '-d', '--runtime', RUNTIME, '--memory-limit', String(256 * MiB), '--cpus', '1', env.image, id, 'sleep', '600']);
      expectCtrOk(started, () => env.containerd.logs(), id);
      expect({ code: started.code, stderr: started.stderr }).toEqual({ code: 0, stderr: '' });
    });

    it('runs in a VM grown by one vCPU and 256 MiB', async () => {
      const grown = await guestSize(id, 'r1');
      expect(grown.onlineCpus).toBe(2);
      // Hot-plugged memory joins MemTotal whole; allow a little for what the kernel takes.
      expect(grown.memTotalMiB - bootSize.memTotalMiB).toBeGreaterThan(250);
      expect(grown.memTotalMiB - bootSize.memTotalMiB).toBeLessThanOrEqual(256);
    });

    it('grows again when a Task Update raises the limits (768 MiB, 2 CPUs), and the guest cgroup gets them', async () => {
      await updateTaskResources(env.containerd.address, env.containerd.namespace, id, { memory: { limit: 768 * MiB }, cpu: { quota: 200_000, period: 100_000 } });
      const grown = await guestSize(id, 'r2');
      expect(grown.onlineCpus).toBe(3);
      expect(grown.memTotalMiB - bootSize.memTotalMiB).toBeGreaterThan(760);
      expect(grown.memTotalMiB - bootSize.memTotalMiB).toBeLessThanOrEqual(768);
      const metrics = await ctr(['task', 'metrics', id]);
      expect(metrics.stdout).toMatch(new RegExp(`memory\\.usage_limit\\s+${768 * MiB}\\b`));
    });

    it('a lower limit leaves the VM as large as it is (memory is never unplugged)', async () => {
      await updateTaskResources(env.containerd.address, env.containerd.namespace, id, { memory: { limit: 128 * MiB } });
      const after = await guestSize(id, 'r3');
      expect(after.onlineCpus).toBe(3);
      expect(after.memTotalMiB - bootSize.memTotalMiB).toBeGreaterThan(760);
    });

    it('leaves nothing behind once the container is gone', async () => {
      expect((await ctr(['task', 'kill', '-s', 'SIGKILL', id])).code).toBe(0);
      // Delete waits for the exit; a retry covers the moment before it is recorded.
      let deleted = await ctr(['task', 'delete', id]);
      for (let i = 0; deleted.code !== 0 && i < 20; i++) {
        await new Promise((resolve) => setTimeout(resolve, 500));
        deleted = await ctr(['task', 'delete', id]);
      }
      expect(deleted.code).toBe(0);
      expect((await ctr(['containers', 'rm', id])).code).toBe(0);
      expect(await waitForNoLeaks(baseline, 30_000)).toEqual([]);
    });
  });
});
