// `make bench-shared-fs`: the same guest and the same file workload with the sandbox
// directory shared over virtio-9p and over virtio-fs (QEMU, Debian 12's C virtiofsd),
// side by side in one run. Writes bench/shared-fs.md.
//
// Each measure runs in a fresh VM (`ctr run --rm`), so the guest's caches start cold;
// the host's page cache holds the files for both. Times inside the guest come from
// /proc/uptime (10 ms steps), which is fine for the seconds these take under TCG.
import { execFileSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { KataEnv, RUNTIME, startKataEnv } from '../tests/e2e/kata-env';
import { median, timeCtrRun } from './measure';
import { benchDir } from './guest-boot';

const MODES = ['virtio-9p', 'virtio-fs'] as const;
type Mode = (typeof MODES)[number];
const TREE_FILES = Number(process.env.BENCH_TREE_FILES ?? 4900);
const TREE_FILE_BYTES = 4096;
const BIG_FILE_MiB = 64;
const START_SAMPLES = Number(process.env.BENCH_START_SAMPLES ?? 3);

function say(line: string): void {
  process.stderr.write(`bench-shared-fs: ${line}\n`);
}

/** A tarball of TREE_FILES small files in directories of 100, and a BIG_FILE_MiB file. */
function makeInputs(dir: string): { tarBytes: number } {
  const src = path.join(dir, 'src');
  for (let i = 0; i < TREE_FILES; i++) {
    const sub = path.join(src, `d${Math.floor(i / 100)}`);
    if (i % 100 === 0) fs.mkdirSync(sub, { recursive: true });
    fs.writeFileSync(path.join(sub, `f${i}`), crypto.randomBytes(TREE_FILE_BYTES));
  }
  execFileSync('tar', ['-cf', path.join(dir, 'tree.tar'), '-C', src, '.']);
  fs.rmSync(src, { recursive: true });
  const big = fs.openSync(path.join(dir, 'big'), 'w');
  for (let i = 0; i < BIG_FILE_MiB; i++) fs.writeSync(big, crypto.randomBytes(1024 * 1024));
  fs.closeSync(big);
  return { tarBytes: fs.statSync(path.join(dir, 'tree.tar')).size };
}

/** Milliseconds since boot in the guest, from /proc/uptime ("123.45 …"). */
const NOW = 'now() { read u _ < /proc/uptime; echo $(( ${u%.*} * 1000 + 1${u#*.} * 10 - 1000 )); }';

interface Measures {
  untarMs: number;
  findMs: number;
  findEntries: number;
  readMs: number;
  startFirstOutputMs: number;
}

async function runIn(env: KataEnv, volume: string, id: string, script: string): Promise<string> {
  const result = await env.containerd.ctr(
    ['run', '--rm', '--runtime', RUNTIME, '--mount', `type=bind,src=${volume},dst=/data,options=rbind:rw`, env.image, id, 'sh', '-c', `${NOW}; ${script}`],
    { timeoutMs: 600_000 },
  );
  if (result.code !== 0) throw new Error(`${id} exited ${result.code}: ${result.stderr.trim()}`);
  return result.stdout;
}

function field(output: string, name: string): number {
  const match = new RegExp(`${name}=(\\d+)`).exec(output);
  if (!match) throw new Error(`no ${name}= in ${JSON.stringify(output)}`);
  return Number(match[1]);
}

async function measure(mode: Mode, inputs: string): Promise<Measures> {
  say(`${mode}: starting containerd`);
  const env = await startKataEnv({ hypervisor: { sharedFs: mode } });
  try {
    const volume = fs.mkdtempSync(path.join(inputs, `${mode}-`));
    for (const name of ['tree.tar', 'big']) fs.linkSync(path.join(inputs, name), path.join(volume, name));
    say(`${mode}: untar onto the share`);
    const untar = await runIn(env, volume, `sfs-untar-${mode}`, 'mkdir /data/tree; a=$(now); busybox tar -xf /data/tree.tar -C /data/tree || exit 1; sync; b=$(now); echo untar=$((b-a))');
    say(`${mode}: find and read, cold`);
    const cold = await runIn(env, volume, `sfs-cold-${mode}`, 'a=$(now); n=$(find /data/tree | wc -l); b=$(now); cat /data/big > /dev/null; c=$(now); echo find=$((b-a)) entries=$n read=$((c-b))');
    say(`${mode}: ctr run start`);
    const starts: number[] = [];
    for (let i = 0; i < START_SAMPLES; i++) {
      starts.push((await timeCtrRun(env.containerd.address, env.containerd.namespace, ['run', '--rm', '--runtime', RUNTIME, env.image, `sfs-start-${mode}-${i}`, 'sh', '-c', 'echo ready'])).firstOutputMs);
    }
    return { untarMs: field(untar, 'untar'), findMs: field(cold, 'find'), findEntries: field(cold, 'entries'), readMs: field(cold, 'read'), startFirstOutputMs: median(starts) };
  } finally {
    await env.stop();
  }
}

function report(results: Record<Mode, Measures>, tarBytes: number): string {
  const s = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
  const row = (what: string, pick: (m: Measures) => number): string => {
    const [p9, vfs] = MODES.map((mode) => pick(results[mode]));
    return `| ${what} | ${s(p9)} | ${s(vfs)} | ${(vfs / p9).toFixed(2)} |`;
  };
  return [
    '# Shared filesystem: virtio-9p against virtio-fs',
    '',
    `\`make bench-shared-fs\` on ${new Date().toISOString().slice(0, 10)} (${os.cpus().length} cores, ${os.release()}, QEMU TCG, Debian 12's C virtiofsd, virtio_fs_cache = "never", the default).`,
    'Same guest, same containerd, one run; each measure in a fresh VM (cold guest caches, warm host page cache).',
    '',
    '| measure | virtio-9p | virtio-fs | virtio-fs / 9p |',
    '| --- | --- | --- | --- |',
    row(`untar of ${TREE_FILES} files (${(tarBytes / 1e6).toFixed(1)} MB) onto the share`, (m) => m.untarMs),
    row(`find over the tree (${results['virtio-fs'].findEntries} entries), cold`, (m) => m.findMs),
    row(`sequential read of a ${BIG_FILE_MiB} MiB file, cold`, (m) => m.readMs),
    row(`\`ctr run --rm\` → first output (median of ${START_SAMPLES})`, (m) => m.startFirstOutputMs),
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const inputs = fs.mkdtempSync('/tmp/kt-bench-sfs-');
  try {
    say(`making ${TREE_FILES} files and a ${BIG_FILE_MiB} MiB file`);
    const { tarBytes } = makeInputs(inputs);
    const results = {} as Record<Mode, Measures>;
    for (const mode of MODES) results[mode] = await measure(mode, inputs);
    const text = report(results, tarBytes);
    fs.writeFileSync(path.join(benchDir(), 'shared-fs.md'), text);
    process.stdout.write(text);
  } finally {
    fs.rmSync(inputs, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`bench-shared-fs: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
