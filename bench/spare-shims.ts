// `make bench-spare-shims`: pod start with and without spare shim daemons
// ([factory] spare_shims = 1), for VMs booted and VMs cloned from a template, side by
// side in one run, arms interleaved. Writes bench/spare-shims.md (copied into
// bench/results.md by `make bench`).
//
// A spare is launched during a pod's Create and is ready about a second later; a pod
// started before that finds none and starts as without spares. The spare arms measure
// the steady state: each waits (unmeasured) until its pool holds a ready spare, and
// checks that the pod then ran on it.
import * as fs from 'fs';
import * as path from 'path';
import { KATA_HANDLER } from '../tests/harness/containerd';
import { vmmsUnder } from '../tests/harness/spares';
import { onReadySpare, spareReady } from './on-spare';
import { CriKataEnv, KataEnv, RUNTIME, startKataEnv } from '../tests/e2e/kata-env';
import { criEnv, startPod } from './cri-pods';
import { benchDir } from './guest-boot';
import { median, pssKiB, roundOrder, stopAll, timeCtrRun } from './measure';
import { warmRoot } from '../sandbox/warm-vm';

const SAMPLES = Number(process.env.BENCH_START_SAMPLES ?? 5);
/** A spare's memory is read after it has idled this long (its V8 gives back start-up heap after ~10 s). */
const SPARE_IDLE_MS = 15_000;

function say(line: string): void {
  process.stderr.write(`bench-spare-shims: ${line}\n`);
}

interface Arm {
  name: string;
  spares: boolean;
  /** Each spare holds a VM restored from the template ([factory] spare_vms). */
  spareVms: boolean;
  ctr: KataEnv;
  cri: CriKataEnv;
}

/** Runs `start` timed; in a spare arm, on a ready spare (on-spare.ts). */
function onSpare<T>(arm: Arm, state: string, logs: () => string, start: () => Promise<T>): Promise<T> {
  return arm.spares ? onReadySpare(state, logs, arm.spareVms, start) : start();
}

async function ctrStart(arm: Arm, id: string): Promise<number> {
  const { containerd, image } = arm.ctr;
  const t = await onSpare(arm, containerd.state, () => containerd.logs(), () => timeCtrRun(containerd.address, containerd.namespace, ['run', '--rm', '--runtime', RUNTIME, image, id, 'sh', '-c', 'echo ready']));
  return t.firstOutputMs;
}

async function criStart(arm: Arm, name: string): Promise<number> {
  const t = await onSpare(arm, arm.cri.cd.state, () => arm.cri.cd.logs(), () => startPod(arm.cri, KATA_HANDLER, name));
  return t.podMs;
}

async function main(): Promise<void> {
  const templatePath = fs.mkdtempSync('/var/tmp/kt-bench-templates-');
  const arms: Arm[] = [];
  let measured = false;
  const results: Array<{ ctr: number; cri: number }> = [];
  let spareMemory = { pss: 0, private: 0 };
  let spareVmMemory = { pss: 0, private: 0 };
  try {
    say('starting 5 private containerds and 5 CRI containerds (booted, booted + spare, template, template + spare, template + spare with VM) ...');
    for (const [name, template, spares, spareVms] of [
      ['kata-ts', false, false, false],
      ['kata-ts + spare shim', false, true, false],
      ['kata-ts template', true, false, false],
      ['kata-ts template + spare shim', true, true, false],
      ['kata-ts template + spare shim with VM', true, true, true],
    ] as const) {
      const factory = { ...(template ? { enableTemplate: true, templatePath } : {}), ...(spares ? { spareShims: 1 } : {}), ...(spareVms ? { spareVms } : {}) };
      const ctr = await startKataEnv({ factory });
      arms.push({ name, spares, spareVms, ctr, cri: await criEnv(template ? templatePath : undefined, spares ? 1 : 0, spareVms) });
    }
    // Unmeasured: makes the template, and launches each spare arm's first spare.
    say('first pod of each arm (makes the template, launches the first spares)');
    for (const [i, arm] of arms.entries()) {
      await ctrStart({ ...arm, spares: false, spareVms: false }, `warm-${i}`);
      await criStart({ ...arm, spares: false, spareVms: false }, `bench-warm-${i}`);
    }
    const ctrTimes = arms.map(() => [] as number[]);
    const criTimes = arms.map(() => [] as number[]);
    for (let round = 0; round < SAMPLES; round++) {
      for (const a of roundOrder(arms.length, round)) {
        ctrTimes[a].push(await ctrStart(arms[a], `lat-${a}-${round}`));
        criTimes[a].push(await criStart(arms[a], `bench-${a}-${round}`));
      }
      say(`round ${round + 1} of ${SAMPLES}: ${arms.map((arm, a) => `${arm.name} ${ctrTimes[a][round].toFixed(0)}/${criTimes[a][round].toFixed(0)} ms`).join(', ')}`);
    }
    for (const a of arms.keys()) results.push({ ctr: median(ctrTimes[a]), cri: median(criTimes[a]) });
    const pid = await spareReady(arms[3].ctr.containerd.state);
    await new Promise((r) => setTimeout(r, SPARE_IDLE_MS));
    spareMemory = pssKiB(pid);
    const withVm = await spareReady(arms[4].ctr.containerd.state);
    const [vm] = vmmsUnder(warmRoot(arms[4].ctr.stateDir));
    if (vm === undefined) throw new Error('the spare with a VM has no VM running');
    const [a, b] = [pssKiB(withVm), pssKiB(vm)];
    spareVmMemory = { pss: a.pss + b.pss, private: a.private + b.private };
    measured = true;
  } finally {
    try {
      await stopAll(
        arms.flatMap((arm) => [arm.ctr.stop(), arm.cri.stop()]),
        measured,
        say,
      );
    } finally {
      fs.rmSync(templatePath, { recursive: true, force: true });
    }
  }
  const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}×`;
  const row = (what: string, v: number[]) =>
    `| ${what} | ${v.map((x) => `${x.toFixed(0)} ms`).join(' | ')} | ${ratio(v[1], v[0])} | ${ratio(v[3], v[2])} | ${ratio(v[2], v[0])} | ${ratio(v[3], v[0])} | ${ratio(v[4], v[0])} |`;
  const text = [
    '# Spare shim daemons: pod start with a daemon started ahead',
    '',
    `\`make bench-spare-shims\` on ${new Date().toISOString()} (2 cores, QEMU TCG, private containerd 1.6, image busybox; medians of ${SAMPLES}, arms interleaved round by round).`,
    'Arms: every VM booted (kata-ts) or cloned from a template, each without and with `[factory] spare_shims = 1`; and templates with a spare that holds a VM restored ahead (`spare_vms = true`). A spare arm waits, unmeasured, until its pool holds a ready spare before each pod (the steady state; a spare is ready about a second after the pod whose Create launched it, a spare with a VM once its VM is restored), and checks in containerd\'s log that the pod ran on that spare (and in its VM).',
    '',
    '| measure | kata-ts | kata-ts + spare | template | template + spare | template + spare VM | spare / none (booted) | spare / none (template) | template / booted | template + spare / booted | template + spare VM / booted |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    row('ctr run → first output', results.map((r) => r.ctr)),
    row('CRI pod start: RunPodSandbox + CreateContainer + StartContainer', results.map((r) => r.cri)),
    '',
    `An idle spare (one per pool, that is per containerd and namespace, not per pod) holds ${(spareMemory.pss / 1024).toFixed(1)} MiB PSS, ${(spareMemory.private / 1024).toFixed(1)} MiB private, ${SPARE_IDLE_MS / 1000} s after it became ready.`,
    `An idle spare with its VM (the shim and its QEMU) holds ${(spareVmMemory.pss / 1024).toFixed(1)} MiB PSS, ${(spareVmMemory.private / 1024).toFixed(1)} MiB private: the price of the spare VM arm, paid once per pool while no pod takes it.`,
    '',
  ].join('\n');
  fs.writeFileSync(path.join(benchDir(), 'spare-shims.md'), text);
  process.stdout.write(text);
}

main().catch((err) => {
  process.stderr.write(`bench-spare-shims: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
