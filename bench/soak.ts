// `make soak` (not part of `make test`): many VMs in a row on one private containerd,
// with two other VMs kept busy the whole time. N sequential `ctr run --rm` (default
// 200, SOAK_RUNS) and then M CRI pod create/delete cycles (default 20, SOAK_PODS);
// reports failures, p50/p99/max times and anything left on the host, in bench/soak.md.
// Exits non-zero on any failure or leak. Never stops at one failure: each is recorded
// and the soak carries on.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { removeCgroupTree } from '../tests/harness/cgroups';
import { KATA_HANDLER } from '../tests/harness/containerd';
import { containerConfig, podSandboxConfig } from '../tests/harness/cri-pod';
import { buildBusyboxImage, DEFAULT_IMAGE_CACHE_DIR } from '../tests/harness/image';
import { HostSnapshot, snapshotHost, waitForNoLeaks } from '../tests/harness/leaks';
import { CriKataEnv, removeContainer, RUNTIME, startCriKataEnv } from '../tests/e2e/kata-env';
import { benchDir } from './guest-boot';
import { cpuTicks, median } from './measure';

function wholeNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name}=${JSON.stringify(raw)}: expected a whole number >= 0`);
  return n;
}

const RUNS = wholeNumber('SOAK_RUNS', 200);
const PODS = wholeNumber('SOAK_PODS', 20);
/** Bound on one `ctr run` and on each CRI call (TCG boots with two busy VMs beside them). */
const STEP_TIMEOUT_MS = wholeNumber('SOAK_TIMEOUT_S', 300) * 1000;
/** How long teardown may take to finish before what is left counts as a leak. */
const LEAK_WAIT_MS = 60_000;
const BUSY_VMS = 2;
const BUSY_COMMAND = ['sh', '-c', 'while :; do :; done'];
const BUSY_SHOWN = "sh -c 'while :; do :; done'";
const EXCERPT = 600;
/** Lines of other runs' new host state listed per leak check (they are not counted). */
const OTHER_SHOWN = 20;

const say = (line: string): void => {
  process.stdout.write(`${line}\n`);
};
const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
const excerpt = (s: string): string => {
  const t = s.trim();
  return t.length <= EXCERPT ? t : `…${t.slice(-EXCERPT)}`;
};
const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** Nearest-rank percentile (p99 of 200 samples is the 198th smallest). */
function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)];
}

interface Failure {
  phase: string;
  what: string;
  detail: string;
}

interface LeakCheck {
  phase: string;
  /** New host state that names this soak's dirs, ids, pod cgroups, or is a link/netns/shim socket. */
  ours: string[];
  /** New host state naming nothing of ours: most likely another run on this host. */
  other: string[];
}

let interrupted = false;
process.on('SIGINT', () => {
  if (interrupted) process.exit(130);
  interrupted = true;
  say('soak: interrupted: finishing the current step, then cleaning up (Ctrl-C again to abandon everything)');
});
process.on('SIGTERM', () => {
  interrupted = true;
});

class Soak {
  readonly failures: Failure[] = [];
  readonly leakChecks: LeakCheck[] = [];
  readonly runMs: number[] = [];
  readonly podRunningMs: number[] = [];
  readonly sandboxMs: number[] = [];
  readonly cycleMs: number[] = [];
  runsDone = 0;
  podsDone = 0;
  busyCpu: string[] = [];
  private image = '';
  private readonly busy: Array<{ id: string; qemuPid?: number; ticks?: number; startedAt?: number }> = [];

  constructor(readonly env: CriKataEnv) {}

  get stateDir(): string {
    return path.join(this.env.dir, 'vm');
  }

  private ctr(args: string[]) {
    return this.env.cd.ctr(args, { timeoutMs: STEP_TIMEOUT_MS });
  }

  private fail(phase: string, what: string, detail: string): void {
    this.failures.push({ phase, what, detail });
  }

  /** containerd's (and the shims') last warnings and errors naming `id`, else its last lines naming it. */
  private logLinesOf(id: string): string {
    const named = this.env.cd.logs().split('\n').filter((l) => l.includes(id));
    const bad = named.filter((l) => /"level":[456]0\b|level=(warning|error|fatal)\b/.test(l));
    const lines = bad.length ? bad.slice(-5) : named.slice(-2);
    return lines.length ? `; containerd log: ${lines.map((l) => JSON.stringify(l.slice(0, 400))).join(' ')}` : '';
  }

  /** busybox for `ctr` (the CRI images are in k8s.io; ctr runs in the harness namespace). */
  async importImage(): Promise<void> {
    const image = await buildBusyboxImage(DEFAULT_IMAGE_CACHE_DIR);
    await this.env.cd.importImage(image.archive);
    this.image = image.ref;
  }

  async startBusyVms(): Promise<void> {
    const fifoDir = path.join(this.env.cd.dir, 'fifo');
    for (let k = 1; k <= BUSY_VMS; k++) {
      const id = `soak-busy-${k}`;
      this.busy.push({ id });
      const t0 = Date.now();
      const r = await this.ctr(['run', '-d', '--fifo-dir', fifoDir, '--runtime', RUNTIME, this.image, id, ...BUSY_COMMAND]);
      if (r.code !== 0) throw new Error(`cannot start busy VM ${id} (code ${r.code}): ${excerpt(r.stderr)}`);
      const entry = this.busy[this.busy.length - 1];
      try {
        entry.qemuPid = Number(fs.readFileSync(path.join(this.stateDir, this.env.cd.namespace, id, 'qemu.pid'), 'utf8'));
        entry.ticks = cpuTicks(entry.qemuPid);
        entry.startedAt = Date.now();
      } catch {
        /* CPU use is then not reported */
      }
      say(`soak: busy VM ${id} running (${seconds(Date.now() - t0)}): ${BUSY_SHOWN}`);
    }
  }

  /** Records a failure for each busy VM that is no longer running. */
  async checkBusyVms(phase: string): Promise<void> {
    const r = await this.ctr(['task', 'ls']);
    for (const { id } of this.busy) {
      const line = r.stdout.split('\n').find((l) => l.split(/\s+/)[0] === id);
      if (!line || !/\bRUNNING\b/.test(line)) this.fail(phase, `busy VM ${id}`, `not running any more: ${line?.trim() ?? `not in ctr task ls (code ${r.code}) ${excerpt(r.stderr)}`}`);
    }
  }

  async stopBusyVms(): Promise<void> {
    this.busyCpu = this.busy.map(({ id, qemuPid, ticks, startedAt }) => {
      if (qemuPid === undefined || ticks === undefined || startedAt === undefined) return `${id}: CPU use unknown`;
      try {
        const used = (cpuTicks(qemuPid) - ticks) / 100; // USER_HZ
        return `${id}: QEMU used ${((used / ((Date.now() - startedAt) / 1000)) * 100).toFixed(0)} % of a core over ${seconds(Date.now() - startedAt)}`;
      } catch {
        return `${id}: QEMU (pid ${qemuPid}) was gone before the end`;
      }
    });
    for (const { id } of this.busy) {
      await removeContainer((args) => this.ctr(args), id);
      const left = (await this.ctr(['containers', 'ls', '-q'])).stdout.split('\n').includes(id);
      if (left) this.fail('teardown', `busy VM ${id}`, 'still listed by ctr containers ls after kill, delete and rm');
    }
  }

  async ctrRuns(): Promise<void> {
    for (let i = 1; i <= RUNS && !interrupted; i++) {
      const id = `soak-${i}`;
      const want = { stdout: `${id}\n`, code: i % 7 };
      const t0 = process.hrtime.bigint();
      const r = await this.ctr(['run', '--rm', '--runtime', RUNTIME, this.image, id, 'sh', '-c', `echo ${id}; exit ${i % 7}`]);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      this.runsDone = i;
      if (r.stdout === want.stdout && r.code === want.code) {
        this.runMs.push(ms);
        say(`soak ${i}/${RUNS} ok ${seconds(ms)}`);
        continue;
      }
      const timedOut = r.code === null;
      this.fail('ctr run', id, `${timedOut ? 'timed out (ctr killed)' : `exit code ${r.code} (want ${want.code})`} after ${seconds(ms)}; stdout ${JSON.stringify(excerpt(r.stdout))} (want ${JSON.stringify(want.stdout)}); stderr ${JSON.stringify(excerpt(r.stderr))}${this.logLinesOf(id)}`);
      say(`soak ${i}/${RUNS} FAILED ${seconds(ms)}: ${timedOut ? 'timed out' : `exit ${r.code}`}, stdout ${JSON.stringify(excerpt(r.stdout))}, stderr ${JSON.stringify(excerpt(r.stderr))}`);
      // A timed-out or broken run may have left its task and container: out of the way.
      if ((await this.ctr(['containers', 'ls', '-q'])).stdout.split('\n').includes(id)) {
        await removeContainer((args) => this.ctr(args), id);
      }
    }
  }

  async criCycles(): Promise<void> {
    const { cd, cri, images } = this.env;
    const opts = { timeoutMs: STEP_TIMEOUT_MS };
    for (let j = 1; j <= PODS && !interrupted; j++) {
      const name = `soak-pod-${j}`;
      const config = podSandboxConfig(cd.cri, name);
      let podId: string | undefined;
      let step = 'RunPodSandbox';
      const t0 = process.hrtime.bigint();
      const since = (): number => Number(process.hrtime.bigint() - t0) / 1e6;
      try {
        podId = (await cri.runPodSandbox({ config, runtime_handler: KATA_HANDLER }, opts)).pod_sandbox_id;
        const sandboxMs = since();
        step = 'CreateContainer';
        const app = containerConfig('app', images.busybox, ['sh', '-c', `echo ${name}; exec sleep 3600`]);
        const { container_id } = await cri.createContainer({ pod_sandbox_id: podId, config: app, sandbox_config: config }, opts);
        step = 'StartContainer';
        await cri.startContainer({ container_id }, opts);
        const runningMs = since();
        step = 'ContainerStatus';
        const state = (await cri.containerStatus({ container_id }, opts)).status?.state;
        if (state !== 'CONTAINER_RUNNING') throw new Error(`container state ${state}, want CONTAINER_RUNNING`);
        step = 'ExecSync';
        const token = `exec-${name}`;
        const r = await cri.execSync({ container_id, cmd: ['echo', token], timeout: 60 }, opts);
        if (r.exit_code !== 0 || r.stdout.toString() !== `${token}\n`) {
          throw new Error(`exec echo ${token}: exit ${r.exit_code}, stdout ${JSON.stringify(excerpt(r.stdout.toString()))}, stderr ${JSON.stringify(excerpt(r.stderr.toString()))}`);
        }
        step = 'StopPodSandbox';
        await cri.stopPodSandbox({ pod_sandbox_id: podId }, opts);
        step = 'RemovePodSandbox';
        await cri.removePodSandbox({ pod_sandbox_id: podId }, opts);
        podId = undefined;
        const cycleMs = since();
        this.sandboxMs.push(sandboxMs);
        this.podRunningMs.push(runningMs);
        this.cycleMs.push(cycleMs);
        say(`soak pod ${j}/${PODS} ok: sandbox ${seconds(sandboxMs)}, pod+container running ${seconds(runningMs)}, whole cycle ${seconds(cycleMs)}`);
      } catch (e) {
        this.fail('CRI cycle', name, `${step} failed after ${seconds(since())}: ${excerpt(errorText(e))}${podId ? this.logLinesOf(podId) : ''}`);
        say(`soak pod ${j}/${PODS} FAILED at ${step} after ${seconds(since())}: ${excerpt(errorText(e))}`);
      } finally {
        this.podsDone = j;
        if (podId !== undefined) {
          for (const rpc of ['stopPodSandbox', 'removePodSandbox'] as const) {
            await cri[rpc]({ pod_sandbox_id: podId }, opts).catch((e: unknown) => this.fail('CRI cycle', name, `cleanup ${rpc} failed: ${excerpt(errorText(e))}`));
          }
        }
        // kubelet's part: the pod cgroup.
        const cg = removeCgroupTree(config.linux?.cgroup_parent ?? '');
        if (cg.failed.length > 0) this.fail('CRI cycle', name, `pod cgroup not removable: ${cg.failed.join('; ')}`);
      }
    }
  }

  /**
   * What is on the host now and was not in `since` (scoped as the e2e suites scope it),
   * after giving teardown LEAK_WAIT_MS to finish.
   */
  async checkLeaks(phase: string, since: HostSnapshot, ignoreCgroups?: string[]): Promise<void> {
    const mine = [this.env.dir, this.env.cd.dir, this.env.cd.cri.cgroupRoot, `/${this.env.cd.namespace}/soak-`];
    const isOurs = (l: string): boolean =>
      mine.some((m) => l.includes(m)) || /^process \d+ \(ours,/.test(l) || /^(link|netns): /.test(l) || l.startsWith('socket: /run/containerd/s/');
    // One snapshot at a time (waitForNoLeaks with no wait): another run's state on this
    // host must not hold us for the whole bound once ours is gone.
    const deadline = Date.now() + LEAK_WAIT_MS;
    let leaks: string[];
    for (;;) {
      leaks = await waitForNoLeaks(since, 0, ignoreCgroups ? { ignoreCgroups } : {});
      if (!leaks.some(isOurs) || Date.now() >= deadline) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    const check = { phase, ours: leaks.filter(isOurs), other: leaks.filter((l) => !isOurs(l)) };
    this.leakChecks.push(check);
    say(`soak: leak check ${phase}: ${check.ours.length === 0 ? 'none' : `${check.ours.length} left`}${check.other.length ? ` (+${check.other.length} new on the host naming nothing of ours)` : ''}`);
    for (const l of check.ours) say(`  leak: ${l}`);
    for (const l of check.other.slice(0, OTHER_SHOWN)) say(`  other: ${l}`);
  }

  get leakCount(): number {
    return this.leakChecks.reduce((n, c) => n + c.ours.length, 0);
  }
}

function machine(configPath: string): string[] {
  const out = (cmd: string, args: string[]): string => {
    try {
      return execFileSync(cmd, args, { encoding: 'utf8', timeout: 10_000 }).trim().split('\n')[0];
    } catch (e) {
      return `unknown (${errorText(e).split('\n')[0]})`;
    }
  };
  let hypervisor: Record<string, unknown> = {};
  try {
    hypervisor = (JSON.parse(fs.readFileSync(configPath, 'utf8')) as { hypervisor?: Record<string, unknown> }).hypervisor ?? {};
  } catch {
    /* reported as unknown */
  }
  return [
    `- cores: ${os.cpus().length} (${os.cpus()[0]?.model ?? 'unknown'}), memory ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    `- host kernel: ${os.release()}`,
    `- containerd: ${out('containerd', ['--version'])}`,
    `- QEMU: ${out('qemu-system-x86_64', ['--version'])}, accelerator **${String(hypervisor.accelerator ?? 'unknown')}**, ${String(hypervisor.memoryMiB ?? '?')} MiB guests`,
  ];
}

function stats(label: string, values: number[]): string {
  if (values.length === 0) return `| ${label} | 0 | – | – | – |`;
  return `| ${label} | ${values.length} | ${seconds(median(values))} | ${seconds(percentile(values, 99))} | ${seconds(Math.max(...values))} |`;
}

function report(soak: Soak | undefined, startedAt: Date, totalMs: number, setupError: string | undefined, machineLines: string[]): string {
  const lines = [
    '# kata-ts soak',
    '',
    `Run ${startedAt.toISOString()} by \`make soak\` (\`bench/soak.ts\`), total ${seconds(totalMs)} (${(totalMs / 60_000).toFixed(1)} min).`,
    '',
    ...machineLines,
    '',
    `One private containerd 1.6 with the CRI plugin; ${BUSY_VMS} other kata VMs (\`ctr run -d\`, \`${BUSY_SHOWN}\`) kept a vCPU busy throughout.`,
    `N = ${RUNS} sequential \`ctr run --rm --runtime ${RUNTIME} busybox soak-<i> sh -c 'echo soak-<i>; exit <i%7>'\`, each ok only with exactly that stdout and exit code;`,
    `M = ${PODS} CRI cycles (handler \`${KATA_HANDLER}\`): RunPodSandbox, CreateContainer + StartContainer (busybox \`sleep\`), ContainerStatus RUNNING, ExecSync \`echo\`, StopPodSandbox, RemovePodSandbox.`,
    `Each \`ctr run\` and each CRI call is bounded by ${seconds(STEP_TIMEOUT_MS)} (SOAK_TIMEOUT_S).`,
  ];
  if (interrupted) lines.push('', '**Interrupted** before the end: the numbers cover what ran.');
  if (setupError) lines.push('', '**Setup failed** (the soak did not run to the end):', '', '```', setupError, '```');
  if (soak) {
    lines.push(
      '',
      `Completed: ${soak.runsDone}/${RUNS} runs, ${soak.podsDone}/${PODS} pod cycles.`,
      '',
      '## Times',
      '',
      'Successful runs and cycles only. p50 is the median, p99 the nearest rank.',
      '`ctr run` is timed from spawning `ctr` to its exit: VM boot, container run, output, exit status and teardown of the VM.',
      '',
      '| measure | samples | p50 | p99 | max |',
      '| --- | --- | --- | --- | --- |',
      stats('`ctr run --rm` → exit', soak.runMs),
      stats('CRI RunPodSandbox (VM boot)', soak.sandboxMs),
      stats('CRI pod + container running (RunPodSandbox + CreateContainer + StartContainer)', soak.podRunningMs),
      stats('CRI whole cycle (… + exec + StopPodSandbox + RemovePodSandbox)', soak.cycleMs),
      '',
      `Busy VMs: ${soak.busyCpu.length ? soak.busyCpu.join('; ') : 'not measured'}.`,
      '',
      `## Failures: ${soak.failures.length}`,
      '',
      ...(soak.failures.length === 0 ? ['none'] : soak.failures.map((f) => `- ${f.phase} **${f.what}**: ${f.detail.replace(/\n/g, ' ⏎ ')}`)),
      '',
      `## Leaks: ${soak.leakCount === 0 ? 'none' : soak.leakCount}`,
      '',
      'Host processes (VMMs, shims), mounts, sockets, netns, links and cgroups that appeared, once teardown had ' +
        `${seconds(LEAK_WAIT_MS)} to finish. The baseline for the runs and pods is taken with containerd up and the busy VMs running; ` +
        'the busy VMs\' teardown is checked against the host before they started, containerd\'s against the host before it started.',
      '',
    );
    for (const c of soak.leakChecks) {
      lines.push(`- ${c.phase}: ${c.ours.length === 0 ? 'none' : ''}`, ...c.ours.map((l) => `  - \`${l}\``));
      if (c.other.length) {
        const more = c.other.length > OTHER_SHOWN ? `, and ${c.other.length - OTHER_SHOWN} more` : '';
        lines.push(`  - not counted (names nothing of this soak's; another run on this host?): ${c.other.slice(0, OTHER_SHOWN).map((l) => `\`${l}\``).join(', ')}${more}`);
      }
    }
  }
  return `${lines.join('\n')}\n`;
}

async function main(): Promise<number> {
  const startedAt = new Date();
  const t0 = Date.now();
  say(`soak: ${RUNS} ctr runs and ${PODS} CRI pod cycles beside ${BUSY_VMS} busy VMs (TCG: expect several seconds per VM)`);
  let env: CriKataEnv | undefined;
  let soak: Soak | undefined;
  let setupError: string | undefined;
  let machineLines = machine('');
  try {
    env = await startCriKataEnv('/tmp/kt-soak-');
    machineLines = machine(path.join(env.dir, 'config.json')); // before stop() removes it
    soak = new Soak(env);
    say(`soak: containerd ${env.cd.dir} up, images imported`);
    await soak.importImage();
    const noBusy = await snapshotHost({ dirs: [env.cd.dir, soak.stateDir] });
    try {
      await soak.startBusyVms();
      const baseline = await snapshotHost({ dirs: [env.cd.dir, soak.stateDir] });
      const criScope = ['/katats-test', env.cd.cri.cgroupRoot];
      await soak.ctrRuns();
      await soak.checkBusyVms('after the ctr runs');
      await soak.checkLeaks('after the ctr runs', baseline, criScope);
      await soak.criCycles();
      await soak.checkBusyVms('after the CRI cycles');
      await soak.checkLeaks('after the CRI cycles', baseline, criScope);
    } finally {
      await soak.stopBusyVms();
    }
    await soak.checkLeaks('after stopping the busy VMs', noBusy, ['/katats-test', env.cd.cri.cgroupRoot]);
  } catch (e) {
    setupError = ((e as Error).stack ?? String(e)).slice(0, 2000);
    say(`soak: ${setupError}`);
  } finally {
    if (env) {
      const leftovers = await env.stop().catch((e: unknown) => [`containerd stop failed: ${errorText(e)}`]);
      if (soak) {
        for (const l of leftovers) soak.failures.push({ phase: 'teardown', what: 'containerd stop', detail: `had to clean up ${l}` });
        await soak.checkLeaks('after containerd stopped', env.before);
      }
    }
  }
  const totalMs = Date.now() - t0;
  const text = report(soak, startedAt, totalMs, setupError, machineLines);
  fs.writeFileSync(path.join(benchDir(), 'soak.md'), text);
  process.stdout.write(`\n${text}`);
  const failures = soak?.failures.length ?? 0;
  const leaks = soak?.leakCount ?? 0;
  say(`soak: ${failures} failure(s), ${leaks} leak(s)${setupError ? ', setup failed' : ''}${interrupted ? ', interrupted' : ''} in ${seconds(totalMs)}; wrote bench/soak.md`);
  return failures > 0 || leaks > 0 || setupError !== undefined || interrupted ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`soak: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  },
);
