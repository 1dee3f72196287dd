// `make bench-clone-profile`: where a VM template clone's pod start goes on the guest's
// side. perf samples the whole host while `ctr run --rm ... echo ready` starts a clone;
// the vCPU thread's samples are split by the agent calls the shim logs at debug level
// into running guest code and QEMU translating it. Writes bench/clone-profile.md.
import { execFileSync, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { RUNTIME as KATA, startKataEnv } from '../tests/e2e/kata-env';
import { benchDir } from './guest-boot';
import { median, timeCtrRun } from './measure';
import { agentCallPhases, firstLogged, parsePerfScript, Phase, PhaseSplit, SampleKind, splitByPhase } from './perf-split';

const RUNS = Number(process.env.BENCH_PROFILE_RUNS ?? 3);
const FREQUENCY_HZ = 1999;

function say(line: string): void {
  process.stderr.write(`bench-clone-profile: ${line}\n`);
}

/** perf samples the whole host (-a) with wall-clock timestamps, to match the shim's log. */
async function recorded<T>(file: string, during: () => Promise<T>): Promise<T> {
  const perf = spawn('perf', ['record', '-q', '-a', '-k', 'CLOCK_REALTIME', '-F', String(FREQUENCY_HZ), '-o', file], { stdio: ['ignore', 'ignore', 'inherit'] });
  const exited = new Promise((resolve) => perf.once('exit', resolve));
  await new Promise((r) => setTimeout(r, 500)); // perf is sampling
  try {
    return await during();
  } finally {
    await new Promise((r) => setTimeout(r, 300));
    perf.kill('SIGINT');
    await exited;
  }
}

/** The clone's phases: QEMU restoring, the agent's first answer, then each agent call. */
function clonePhases(log: string, podId: string): Phase[] {
  const at = firstLogged(log, podId);
  const launched = at.get('starting qemu');
  const restored = at.get('VM restored from its template and running');
  const ready = at.get('agent ready');
  if (launched === undefined || restored === undefined || ready === undefined) throw new Error(`pod ${podId} was not a clone (no restore in its shim log)`);
  return [{ name: '(QEMU restores the template)', start: launched, end: restored }, { name: "(the agent's first answer)", start: restored, end: ready }, ...agentCallPhases(log, podId)];
}

const KINDS: Array<[SampleKind, string]> = [
  ['guestCode', 'guest code'],
  ['translating', 'translating (named TCG functions)'],
  ['qemuOther', 'QEMU, other'],
  ['hostKernel', 'host kernel'],
  ['other', 'other'],
];

function table(runs: PhaseSplit[][]): string[] {
  const names = [...new Set(runs.flatMap((run) => run.map((p) => p.name)))];
  const pct = (v: number): string => `${Math.round(v * 100)} %`;
  const rows = names.map((name) => {
    const of = runs.map((run) => run.find((p) => p.name === name)).filter((p): p is PhaseSplit => p !== undefined);
    const med = (pick: (p: PhaseSplit) => number): number => median(of.map(pick));
    return `| ${name} | ${med((p) => p.ms).toFixed(0)} ms | ${pct(med((p) => p.busy))} | ${KINDS.map(([k]) => pct(med((p) => p.share[k]))).join(' | ')} |`;
  });
  return [`| phase | time | vCPU busy | ${KINDS.map(([, label]) => label).join(' | ')} |`, `| --- | --- | --- | ${KINDS.map(() => '---').join(' | ')} |`, ...rows];
}

async function main(): Promise<void> {
  try {
    execFileSync('perf', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error('perf is needed: apt-get install linux-perf');
  }
  process.env.KATATS_LOG_LEVEL = 'debug'; // the shims log each agent call's time
  const templatePath = fs.mkdtempSync('/var/tmp/kt-bench-templates-');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-clone-profile-'));
  const env = await startKataEnv({ factory: { enableTemplate: true, templatePath }, containerdLogLevel: 'debug' });
  const runs: PhaseSplit[][] = [];
  const firstOutput: number[] = [];
  try {
    const ctrRun = (id: string) => timeCtrRun(env.containerd.address, env.containerd.namespace, ['run', '--rm', '--runtime', KATA, env.image, id, 'sh', '-c', 'echo ready']);
    say('making the template, then one clone unmeasured');
    await ctrRun('profile-template');
    await ctrRun('profile-warm-up');
    for (let i = 0; i < RUNS; i++) {
      const id = `profile-${i}`;
      const file = path.join(work, `${id}.data`);
      const t = await recorded(file, () => ctrRun(id));
      firstOutput.push(t.firstOutputMs);
      const samples = parsePerfScript(execFileSync('perf', ['script', '-i', file, '-F', 'comm,tid,time,ip,sym,dso'], { encoding: 'utf8', maxBuffer: 512 * 1024 * 1024, stdio: ['ignore', 'pipe', 'ignore'] }));
      runs.push(splitByPhase(samples, clonePhases(env.containerd.logs(), id), FREQUENCY_HZ));
      say(`${id}: first output after ${t.firstOutputMs.toFixed(0)} ms, ${samples.length} samples`);
    }
  } finally {
    await env.stop();
    fs.rmSync(templatePath, { recursive: true, force: true });
    fs.rmSync(work, { recursive: true, force: true });
  }
  const report = [
    '# Where a template clone\'s pod start goes (TCG)',
    '',
    `Measured ${new Date().toISOString()} by \`make bench-clone-profile\` on ${os.cpus().length} cores, QEMU **TCG**, VM templates on: ${RUNS} runs of \`ctr run --rm ... echo ready\`, each a clone of one template (first output after ${median(firstOutput).toFixed(0)} ms, median). \`perf record -a\` at ${FREQUENCY_HZ} Hz; the samples of QEMU's vCPU thread are split by the phases the shim logs at debug level: QEMU restoring the template, the agent's first answer, then each agent call (its time as the shim waited for it). Medians over the runs.`,
    '',
    '- **vCPU busy**: the vCPU thread\'s samples over those a fully busy thread would give in that time.',
    "- **guest code**: running code TCG had already translated (perf's JIT map of QEMU's code buffer).",
    "- **translating (named TCG functions)**: `tcg_*`, `translator_*`, `gen_*`, `tb_gen_code`. Debian's QEMU keeps only its dynamic symbols, so the x86 decoder's static functions count under **QEMU, other**: this column is a lower bound on translation.",
    '',
    ...table(runs),
    '',
  ].join('\n');
  fs.writeFileSync(path.join(benchDir(), 'clone-profile.md'), report);
  process.stdout.write(report);
}

main().catch((err) => {
  process.stderr.write(`bench-clone-profile: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
