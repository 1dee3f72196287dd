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
import { agentCallPhases, firstLogged, isVcpuThread, parsePerfScript, PerfSample, Phase, PhaseSplit, SAMPLE_KINDS, SampleKind, sampleKind, splitByPhase, unnamedByNeighbour, ExecMapping } from './perf-split';

const RUNS = Number(process.env.BENCH_PROFILE_RUNS ?? 3);
/** One sample per 0.5 ms of a thread's CPU time: counts are CPU time, not a rate perf may lower. */
const PERIOD_NS = 500_000;
const PERF_STOP_TIMEOUT_MS = 30_000;
const MIN_SAMPLES_FOR_SHARES = 20;
const NEIGHBOURHOOD_ROWS = 12;

function say(line: string): void {
  process.stderr.write(`bench-clone-profile: ${line}\n`);
}

/**
 * Runs `during` while perf samples the whole host (-a), with wall-clock timestamps to
 * match the shim's log; -N: no copies of the binaries in ~/.debug.
 */
async function whilePerfRecords<T>(file: string, during: () => Promise<T>): Promise<T> {
  const perf = spawn('perf', ['record', '-q', '-N', '-a', '-k', 'CLOCK_REALTIME', '-e', 'cpu-clock', '-c', String(PERIOD_NS), '-o', file], { stdio: ['ignore', 'ignore', 'inherit'] });
  const exited = new Promise((resolve) => perf.once('exit', resolve));
  await new Promise((r) => setTimeout(r, 500)); // perf is sampling
  try {
    return await during();
  } finally {
    await new Promise((r) => setTimeout(r, 300));
    perf.kill('SIGINT');
    const stopped = await Promise.race([exited.then(() => true), new Promise<false>((r) => setTimeout(() => r(false), PERF_STOP_TIMEOUT_MS))]);
    if (!stopped) {
      perf.kill('SIGKILL');
      await exited;
    }
  }
}

/** The clone's QEMU and its phases: restoring, the agent's first answer, then each agent call. */
function clonePhases(log: string, podId: string): { vmmPid: number; phases: Phase[] } {
  const at = firstLogged(log, podId);
  const mark = (msg: string) => {
    const line = at.get(msg);
    if (!line) throw new Error(`the shim log of pod ${podId} has no "${msg}" line (not a clone, or the line was lost)`);
    return line;
  };
  const launched = mark('starting qemu');
  // The driver's line after restore; a pod's NICs are plugged later, after the agent answers (Sandbox).
  const restored = mark('VM restored from its template and running');
  const ready = mark('agent ready');
  const vmmPid = Number(restored.fields.pid);
  if (!Number.isInteger(vmmPid) || vmmPid <= 0) throw new Error(`the shim log of pod ${podId} does not name its QEMU's pid`);
  return {
    vmmPid,
    phases: [{ name: '(QEMU restores the template)', start: launched.time, end: restored.time }, { name: "(the agent's first answer)", start: restored.time, end: ready.time }, ...agentCallPhases(log, podId)],
  };
}

const KIND_LABELS: Record<SampleKind, string> = {
  guestCode: 'guest code',
  translating: 'translating (named TCG functions)',
  qemuOther: 'QEMU, other',
  hostKernel: 'host kernel',
  other: 'other',
};

function table(runs: PhaseSplit[][]): string[] {
  const names = [...new Set(runs.flatMap((run) => run.map((p) => p.name)))];
  const pct = (v: number): string => `${Math.round(v * 100)} %`;
  const rows = names.map((name) => {
    const of = runs.map((run) => run.find((p) => p.name === name)).filter((p): p is PhaseSplit => p !== undefined);
    const med = (pick: (p: PhaseSplit) => number): number => median(of.map(pick));
    const samples = med((p) => p.samples);
    // Shares of a handful of samples say nothing.
    const shares = SAMPLE_KINDS.map((k) => (samples >= MIN_SAMPLES_FOR_SHARES ? pct(med((p) => p.share[k])) : '–'));
    return `| ${name} | ${med((p) => p.ms).toFixed(0)} ms | ${pct(med((p) => p.busy))} | ${samples.toFixed(0)} | ${shares.join(' | ')} |`;
  });
  return [`| phase | time | vCPU busy | samples | ${SAMPLE_KINDS.map((k) => KIND_LABELS[k]).join(' | ')} |`, `| --- | --- | --- | --- | ${SAMPLE_KINDS.map(() => '---').join(' | ')} |`, ...rows];
}

/**
 * The binary's exported functions by file offset, if its code is mapped at its file
 * offsets (as in Debian's PIE builds; checked with readelf), else undefined.
 */
function exportedFunctions(binary: string): Array<{ offset: number; name: string }> | undefined {
  const segments = execFileSync('readelf', ['-lW', binary], { encoding: 'utf8' });
  const code = segments.split('\n').find((line) => /^\s*LOAD\b/.test(line) && /\sR E\s/.test(line));
  const fields = code?.trim().split(/\s+/);
  if (!fields || parseInt(fields[1], 16) !== parseInt(fields[2], 16)) return undefined;
  return execFileSync('nm', ['-D', '--defined-only', binary], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter((f) => f.length === 3 && /^[TtWw]$/.test(f[1]))
    .map(([address, , name]) => ({ offset: parseInt(address, 16), name }));
}

/** The rows of the "QEMU, other" table: where the unnamed vCPU samples in QEMU fall. */
function neighbourhoodRows(samples: PerfSample[], mappings: ExecMapping[]): string[] {
  const vcpu = samples.filter(isVcpuThread);
  const unnamed = vcpu.filter((s) => sampleKind(s) === 'qemuOther' && s.sym === '[unknown]');
  const binary = unnamed[0]?.dso;
  if (!binary) return ['(no unnamed QEMU samples: not split)'];
  let symbols;
  try {
    symbols = exportedFunctions(binary);
  } catch (err) {
    return [`(not split: ${(err as Error).message.split('\n')[0]})`];
  }
  if (!symbols) return [`(not split: ${binary}'s code is not mapped at its file offsets)`];
  const all = [...unnamedByNeighbour(unnamed, mappings, binary, symbols)].sort((a, b) => b[1] - a[1]);
  const share = (n: number): string => `${((n / vcpu.length) * 100).toFixed(1)} %`;
  const rest = all.slice(NEIGHBOURHOOD_ROWS).reduce((sum, [, n]) => sum + n, 0);
  return [
    '| address range (exported symbol … the next one) | share of all vCPU samples |',
    '| --- | --- |',
    ...all.slice(0, NEIGHBOURHOOD_ROWS).map(([name, n]) => `| \`${name}\` | ${share(n)} |`),
    ...(rest ? [`| (the other ranges) | ${share(rest)} |`] : []),
    `| (all unnamed QEMU samples) | ${share(unnamed.length)} |`,
  ];
}

async function main(): Promise<void> {
  try {
    execFileSync('perf', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error('perf is needed: apt-get install linux-perf');
  }
  process.env.KATATS_LOG_LEVEL = 'debug'; // the shims log each agent call's time
  const runs: PhaseSplit[][] = [];
  const firstOutput: number[] = [];
  const allSamples: PerfSample[] = [];
  const allMappings: ExecMapping[] = [];
  const templatePath = fs.mkdtempSync('/var/tmp/kt-bench-templates-');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-clone-profile-'));
  let env: Awaited<ReturnType<typeof startKataEnv>> | undefined;
  try {
    env = await startKataEnv({ factory: { enableTemplate: true, templatePath }, containerdLogLevel: 'debug' });
    const { containerd, image } = env;
    const ctrRun = (id: string) => timeCtrRun(containerd.address, containerd.namespace, ['run', '--rm', '--runtime', KATA, image, id, 'sh', '-c', 'echo ready']);
    say('making the template, then one clone unmeasured');
    await ctrRun('profile-template');
    await ctrRun('profile-warm-up');
    for (let i = 0; i < RUNS; i++) {
      const id = `profile-${i}`;
      const file = path.join(work, `${id}.data`);
      const t = await whilePerfRecords(file, () => ctrRun(id));
      firstOutput.push(t.firstOutputMs);
      const { vmmPid, phases } = clonePhases(containerd.logs(), id);
      // Only that QEMU's vCPU thread: perf filters before the text is made.
      const script = execFileSync('perf', ['script', '-i', file, '--pid', String(vmmPid), '--show-mmap-events', '-F', 'comm,pid,tid,time,ip,sym,dso'], { encoding: 'utf8', maxBuffer: 512 * 1024 * 1024, stdio: ['ignore', 'pipe', 'pipe'] });
      const { samples, mappings, unparsed } = parsePerfScript(script);
      runs.push(splitByPhase(samples, vmmPid, phases, PERIOD_NS / 1e9));
      // Only the pod start's samples (up to StartContainer's answer) for the neighbourhood table.
      const started = phases.find((p) => p.name === 'StartContainer')?.end ?? Infinity;
      allSamples.push(...samples.filter((s) => s.pid === vmmPid && s.time < started));
      allMappings.push(...mappings);
      say(`${id}: first output after ${t.firstOutputMs.toFixed(0)} ms; ${samples.length} samples of its QEMU${unparsed ? `, ${unparsed} lines not understood` : ''}`);
    }
  } finally {
    try {
      await env?.stop();
    } finally {
      fs.rmSync(templatePath, { recursive: true, force: true });
      fs.rmSync(work, { recursive: true, force: true });
    }
  }
  const report = [
    '# Where a template clone\'s pod start goes (TCG)',
    '',
    `Measured ${new Date().toISOString()} by \`make bench-clone-profile\` on ${os.cpus().length} cores, QEMU **TCG**, VM templates on: ${RUNS} runs of \`ctr run --rm ... echo ready\`, each a clone of one template (first output after ${median(firstOutput).toFixed(0)} ms, median). \`perf record -a -e cpu-clock\`, a sample per ${PERIOD_NS / 1e6} ms of CPU time; the samples of the clone's vCPU thread (1 vCPU) are split by the phases its shim logs at debug level: QEMU restoring the template, the agent's first answer, then each agent call (its time as the shim waited for it). Each cell is a median over the runs, so a row's shares need not add up to 100 %.`,
    '',
    "- **vCPU busy**: the vCPU thread's CPU time in the phase over the phase's time.",
    "- **guest code**: running code TCG had already translated (QEMU's code buffer, an anonymous executable mapping).",
    "- **translating (named TCG functions)**: QEMU's exported `tcg_*` (except those of the execution loop), `translator_*`, `gen_*` and `tb_gen_code`. Debian's QEMU keeps only its dynamic symbols, so the x86 decoder's static functions count under **QEMU, other**, together with TCG's instruction helpers, softmmu TLB fills, translation-block lookups and device emulation.",
    `- Shares are left out (–) for a phase with fewer than ${MIN_SAMPLES_FOR_SHARES} samples.`,
    '',
    ...table(runs),
    '',
    '## "QEMU, other", by neighbourhood',
    '',
    "The unnamed samples in QEMU's own code from QEMU start to StartContainer's answer, all runs, counted under the address range between the nearest exported symbol below and the next one. Such a range also holds static functions, mostly of the same source file (at its edges, of a neighbouring one): it says roughly where in QEMU the time went, not which function.",
    '',
    ...neighbourhoodRows(allSamples, allMappings),
    '',
  ].join('\n');
  fs.writeFileSync(path.join(benchDir(), 'clone-profile.md'), report);
  process.stdout.write(report);
}

main().catch((err) => {
  process.stderr.write(`bench-clone-profile: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
