// `make bench`: kata-ts against runc, side by side in one run, through one private
// containerd. Writes bench/results.md and bench/memory-per-pod.svg.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { lookupService, TASK_SERVICE } from '../lib/protos';
import { TtrpcClient } from '../ttrpc';
import { KataEnv, RUNTIME as KATA, startKataEnv } from '../tests/e2e/kata-env';
import { cpuTicks, descendants, median, rssKiB, timeCtrRun } from './measure';
import { measureCriPodStart } from './cri-pods';
import { benchDir, GUEST_BOOT_INTRO, measureGuestBoot } from './guest-boot';
import { memoryPlotSvg } from './plot';

/** Tables other targets write, copied into results.md. */
const SEPARATE_RUNS = ['shared-fs.md', 'agent-channel.md'];
const RUNC = 'io.containerd.runc.v2';
const RUNTIMES = [
  { name: 'runc', runtime: RUNC },
  { name: 'kata-ts', runtime: KATA },
] as const;
type RuntimeName = (typeof RUNTIMES)[number]['name'];
const START_SAMPLES = Number(process.env.BENCH_START_SAMPLES ?? 5);
const POD_COUNTS = [1, 5, 10];
const TTRPC_CALLS = 1000;
const TTRPC_CONCURRENCY = 32;
const GUEST_BOOT_SAMPLES = Number(process.env.BENCH_BOOT_SAMPLES ?? 3);

function say(line: string): void {
  process.stderr.write(`bench: ${line}\n`);
}

class Bench {
  private seq = 0;
  constructor(private readonly env: KataEnv) {}

  private ctr(args: string[]) {
    return this.env.containerd.ctr(args, { timeoutMs: 300_000 });
  }

  private bundle(id: string): string {
    return path.join(this.env.containerd.state, 'io.containerd.runtime.v2.task', this.env.containerd.namespace, id);
  }

  /** The shim's own answer to Connect (containerd 1.6's runc shim writes no shim.pid). */
  async shimPid(id: string): Promise<number> {
    const client = await TtrpcClient.connect(this.shimAddress(id));
    try {
      return (await client.call(lookupService(TASK_SERVICE), 'Connect', { id }, { timeoutMs: 10_000 })).shim_pid;
    } finally {
      client.close();
    }
  }

  private shimAddress(id: string): string {
    return fs.readFileSync(path.join(this.bundle(id), 'address'), 'utf8').trim().replace(/^unix:\/\//, '');
  }

  async startLatency(runtime: string): Promise<{ firstOutputMs: number; exitMs: number }> {
    const first: number[] = [];
    const exit: number[] = [];
    for (let i = 0; i < START_SAMPLES; i++) {
      const t = await timeCtrRun(this.env.containerd.address, this.env.containerd.namespace, ['run', '--rm', '--runtime', runtime, this.env.image, `lat-${this.seq++}`, 'sh', '-c', 'echo ready']);
      first.push(t.firstOutputMs);
      exit.push(t.exitMs);
    }
    return { firstOutputMs: median(first), exitMs: median(exit) };
  }

  async startIdle(runtime: string): Promise<string> {
    const id = `idle-${this.seq++}`;
    const result = await this.ctr(['run', '-d', '--runtime', runtime, this.env.image, id, 'sleep', '3600']);
    if (result.code !== 0) throw new Error(`cannot start ${id}: ${result.stderr}`);
    return id;
  }

  async removeAll(ids: string[]): Promise<void> {
    for (const id of ids) {
      await this.ctr(['task', 'kill', '-s', 'SIGKILL', id]);
      for (let i = 0; i < 50 && (await this.ctr(['task', 'delete', id])).code !== 0; i++) await new Promise((r) => setTimeout(r, 200));
      await this.ctr(['containers', 'rm', id]);
    }
  }

  /** Host memory of a pod: its shim and every process under it (VMM or container). */
  async podRssKiB(id: string): Promise<number> {
    const shim = await this.shimPid(id);
    return [shim, ...descendants(shim)].reduce((sum, pid) => sum + rssKiB(pid), 0);
  }

  /** The shim's own idle RSS and CPU share over `windowMs`. */
  async shimIdle(id: string, windowMs = 10_000): Promise<{ rssKiB: number; cpuPercent: number }> {
    const pid = await this.shimPid(id);
    const before = cpuTicks(pid);
    await new Promise((r) => setTimeout(r, windowMs));
    const ticks = cpuTicks(pid) - before;
    const hz = 100; // USER_HZ on Linux
    return { rssKiB: rssKiB(pid), cpuPercent: (ticks / hz / (windowMs / 1000)) * 100 };
  }

  /** Median round trip of Task.Connect to a shim, and calls per second with many in flight. */
  async ttrpc(id: string): Promise<{ medianUs: number; callsPerSecond: number }> {
    const client = await TtrpcClient.connect(this.shimAddress(id));
    const task = lookupService(TASK_SERVICE);
    const call = () => client.call(task, 'Connect', { id }, { timeoutMs: 10_000 });
    try {
      for (let i = 0; i < 50; i++) await call(); // warm-up
      const samples: number[] = [];
      for (let i = 0; i < TTRPC_CALLS; i++) {
        const t = process.hrtime.bigint();
        await call();
        samples.push(Number(process.hrtime.bigint() - t) / 1e3);
      }
      const started = process.hrtime.bigint();
      let issued = 0;
      await Promise.all(
        Array.from({ length: TTRPC_CONCURRENCY }, async () => {
          while (issued++ < TTRPC_CALLS * 5) await call();
        }),
      );
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      return { medianUs: median(samples), callsPerSecond: (TTRPC_CALLS * 5) / seconds };
    } finally {
      client.close();
    }
  }
}

const ratio = (ours: number, theirs: number): string => (theirs > 0 ? `${(ours / theirs).toFixed(1)}×` : 'n/a');
const mib = (kib: number): string => (kib / 1024).toFixed(1);

async function main(): Promise<void> {
  say('starting a private containerd (TCG guests: this takes several minutes) ...');
  const env = await startKataEnv();
  const bench = new Bench(env);
  const rows: string[] = [];
  const memory: Record<RuntimeName, Array<{ pods: number; perPodMiB: number }>> = { runc: [], 'kata-ts': [] };
  try {
    const latency = {} as Record<RuntimeName, { firstOutputMs: number; exitMs: number }>;
    for (const { name, runtime } of RUNTIMES) {
      say(`${name}: ${START_SAMPLES} × ctr run --rm ... echo ready`);
      latency[name] = await bench.startLatency(runtime);
    }
    rows.push(`| ctr run → first output (median of ${START_SAMPLES}) | ${latency.runc.firstOutputMs.toFixed(0)} ms | ${latency['kata-ts'].firstOutputMs.toFixed(0)} ms | ${ratio(latency['kata-ts'].firstOutputMs, latency.runc.firstOutputMs)} |`);
    rows.push(`| ctr run → exit (median of ${START_SAMPLES}) | ${latency.runc.exitMs.toFixed(0)} ms | ${latency['kata-ts'].exitMs.toFixed(0)} ms | ${ratio(latency['kata-ts'].exitMs, latency.runc.exitMs)} |`);
    const pods = await measureCriPodStart(START_SAMPLES, say);
    rows.push(`| CRI RunPodSandbox (median of ${START_SAMPLES}) | ${pods.runc.sandboxMs.toFixed(0)} ms | ${pods['kata-ts'].sandboxMs.toFixed(0)} ms | ${ratio(pods['kata-ts'].sandboxMs, pods.runc.sandboxMs)} |`);
    rows.push(`| CRI pod start: RunPodSandbox + CreateContainer + StartContainer (median of ${START_SAMPLES}) | ${pods.runc.podMs.toFixed(0)} ms | ${pods['kata-ts'].podMs.toFixed(0)} ms | ${ratio(pods['kata-ts'].podMs, pods.runc.podMs)} |`);

    const idle = {} as Record<RuntimeName, { rssKiB: number; cpuPercent: number; ttrpc: { medianUs: number; callsPerSecond: number } }>;
    for (const { name, runtime } of RUNTIMES) {
      say(`${name}: idle shim and ttrpc round trips`);
      const id = await bench.startIdle(runtime);
      idle[name] = { ...(await bench.shimIdle(id)), ttrpc: await bench.ttrpc(id) };
      await bench.removeAll([id]);
    }
    rows.push(`| shim RSS at idle | ${mib(idle.runc.rssKiB)} MiB | ${mib(idle['kata-ts'].rssKiB)} MiB | ${ratio(idle['kata-ts'].rssKiB, idle.runc.rssKiB)} |`);
    rows.push(`| shim CPU at idle (10 s window) | ${idle.runc.cpuPercent.toFixed(2)} % | ${idle['kata-ts'].cpuPercent.toFixed(2)} % | – |`);
    rows.push(`| ttrpc Task.Connect round trip (median of ${TTRPC_CALLS}) | ${idle.runc.ttrpc.medianUs.toFixed(0)} µs | ${idle['kata-ts'].ttrpc.medianUs.toFixed(0)} µs | ${ratio(idle['kata-ts'].ttrpc.medianUs, idle.runc.ttrpc.medianUs)} |`);
    rows.push(`| ttrpc Task.Connect throughput (${TTRPC_CONCURRENCY} in flight) | ${idle.runc.ttrpc.callsPerSecond.toFixed(0)} /s | ${idle['kata-ts'].ttrpc.callsPerSecond.toFixed(0)} /s | ${ratio(idle['kata-ts'].ttrpc.callsPerSecond, idle.runc.ttrpc.callsPerSecond)} |`);

    for (const { name, runtime } of RUNTIMES) {
      const ids: string[] = [];
      for (const pods of POD_COUNTS) {
        while (ids.length < pods) ids.push(await bench.startIdle(runtime));
        await new Promise((r) => setTimeout(r, 5000)); // let the guests settle
        let total = 0;
        for (const id of ids) total += await bench.podRssKiB(id);
        memory[name].push({ pods, perPodMiB: total / pods / 1024 });
        say(`${name}: ${pods} idle pods, ${mib(total / pods)} MiB per pod`);
      }
      await bench.removeAll(ids);
    }
    for (const [i, pods] of POD_COUNTS.entries()) {
      const r = memory.runc[i].perPodMiB;
      const k = memory['kata-ts'][i].perPodMiB;
      rows.push(`| host memory per idle pod, ${pods} pod${pods > 1 ? 's' : ''} (shim + VMM or container) | ${r.toFixed(1)} MiB | ${k.toFixed(1)} MiB | ${ratio(k, r)} |`);
    }
  } finally {
    await env.stop();
  }
  say(`guest kernels: ${GUEST_BOOT_SAMPLES} boots to agent-ready per variant, no containerd`);
  const guest = await measureGuestBoot(GUEST_BOOT_SAMPLES, say);

  const dir = benchDir();
  fs.writeFileSync(path.join(dir, 'memory-per-pod.svg'), memoryPlotSvg(memory));
  const report = [
    '# kata-ts benchmarks',
    '',
    `Measured ${new Date().toISOString()} on ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, QEMU **TCG** (software emulation; KVM hosts boot far faster), one private containerd 1.6, image busybox, runc and kata-ts side by side in one run. Medians; ratio = kata-ts / runc (lower is better, except throughput).`,
    '',
    '| measure | runc | kata-ts | ratio |',
    '| --- | --- | --- | --- |',
    ...rows,
    '',
    '![host memory per idle pod](memory-per-pod.svg)',
    '',
    '## Guest kernels and rootfs formats',
    '',
    GUEST_BOOT_INTRO,
    '',
    ...guest.table,
    '',
    ...separateRuns(dir),
  ].join('\n');
  fs.writeFileSync(path.join(dir, 'results.md'), report);
  process.stdout.write(report);
}

/** The data-path tables, measured by their own targets (make bench-shared-fs, bench-agent-channel), as they last wrote them. */
function separateRuns(dir: string): string[] {
  return SEPARATE_RUNS.filter((name) => fs.existsSync(path.join(dir, name))).flatMap((name) => [fs.readFileSync(path.join(dir, name), 'utf8').replace(/^# /, '## ').trimEnd(), '']);
}

main().catch((err) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
