// `make bench-agent-startup`: what the Node agent's start-up costs in a cold boot, and
// what node/V8 flags save. Each variant is the same guest built with other
// AGENT_NODE_FLAGS (guest/build.sh, into a scratch output directory), booted straight
// through the QEMU driver (TCG) a few times. The agent reports its own start-up on the
// console ('agent ready': Node's bootstrap, loading its modules, its main()); the host
// measures QEMU start → the agent's first answer, an agent round trip afterwards (what
// a flag costs at run time), and QEMU's private memory (under TCG it holds the
// translated code). Writes bench/agent-startup.md.
//
// BENCH_AGENT_STARTUP_IMAGES="name=dir;name=dir" compares already-built image directories
// instead (e.g. the guest of two commits), booted in interleaved rounds so that the host's
// drift falls on all of them alike; it prints its table and writes no file.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { bootToAgent, guestVariants } from '../tests/harness/guest-vm';
import { benchDir } from './guest-boot';
import { median, pssKiB } from './measure';

const BOOTS = Number(process.env.BENCH_AGENT_STARTUP_BOOTS ?? 3);
const CALLS = 200;
/** Where the variant guests are built: a new directory under this one, removed afterwards. */
const SCRATCH_PARENT = process.env.BENCH_AGENT_STARTUP_DIR ?? '/var/tmp';

/**
 * Flags that shape start-up: the JIT tiers (under TCG, generated code is translated
 * again), V8's helper threads, the young generation; and, on the host side, a capped
 * TCG translation buffer ([hypervisor.qemu] tcg_tb_size) with the guest as shipped.
 */
const DEFAULT_VARIANTS: Array<{ name: string; flags: string; tcgTbSizeMiB?: number }> = [
  { name: 'no flags', flags: '' },
  { name: 'no JIT: interpreter only', flags: '--jitless' },
  { name: 'no JIT, no memory reducer (the default)', flags: '--jitless --no-memory-reducer' },
  { name: 'no optimising tiers', flags: '--no-opt --no-sparkplug' },
  { name: 'no V8 helper threads', flags: '--single-threaded' },
  { name: 'small young generation', flags: '--max-semi-space-size=1' },
  { name: 'the default, QEMU tcg_tb_size = 64', flags: '--jitless --no-memory-reducer', tcgTbSizeMiB: 64 },
];

/** BENCH_AGENT_STARTUP_FLAGS="--a;--b --c": those flag sets instead, after no flags. */
const VARIANTS = process.env.BENCH_AGENT_STARTUP_FLAGS
  ? [DEFAULT_VARIANTS[0], ...process.env.BENCH_AGENT_STARTUP_FLAGS.split(';').map((flags) => ({ name: flags.trim(), flags: flags.trim(), tcgTbSizeMiB: undefined }))]
  : DEFAULT_VARIANTS;

interface Startup {
  nodeMs: number;
  modulesMs: number;
  initMs: number;
  modules: number;
  uptimeS: number;
}

interface Sample {
  readyMs: number;
  startup: Startup;
  callUs: number;
  qemuPrivateMiB: number;
}

function say(line: string): void {
  process.stderr.write(`bench-agent-startup: ${line}\n`);
}

function repoRoot(): string {
  return path.resolve(benchDir(), '..');
}

/** Builds the guest with `flags` into the scratch directory (the kernel and packages come from the main cache); its image directory. */
function buildVariant(flags: string, scratch: string): string {
  const root = repoRoot();
  const out = execFileSync(path.join(root, 'guest', 'build.sh'), [], {
    env: { ...process.env, GUEST_OUT: path.join(scratch, 'out'), GUEST_CACHE: process.env.GUEST_CACHE ?? path.join(root, 'guest', 'out', 'cache'), GUEST_KEEP: String(VARIANTS.length + 1), AGENT_NODE_FLAGS: flags },
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
  });
  return out.trim().split('\n').pop()!;
}

/** The agent's own start-up report: the last 'agent ready' line on the console. */
function startupOf(console: string): Startup {
  const line = console.split('\n').reverse().find((l) => l.includes('"msg":"agent ready"'));
  const startup = line && (JSON.parse(line.slice(line.indexOf('{'))) as { startup?: Startup }).startup;
  if (!startup) throw new Error(`no 'agent ready' line with start-up times on the console:\n${console.slice(-2000)}`);
  return startup;
}

async function boot(imageDir: string, tcgTbSizeMiB: number | undefined): Promise<Sample> {
  const guest = await bootToAgent(guestVariants(imageDir).dax, { tcgTbSizeMiB });
  try {
    const startup = startupOf(guest.hypervisor.consoleTail(64 * 1024));
    const samples: number[] = [];
    for (let i = 0; i < CALLS; i++) {
      const started = process.hrtime.bigint();
      await guest.agent.guestMetrics();
      samples.push(Number(process.hrtime.bigint() - started) / 1000);
    }
    const qemuPrivateMiB = pssKiB(guest.hypervisor.pid()!).private / 1024;
    return { readyMs: guest.readyMs, startup, callUs: median(samples), qemuPrivateMiB };
  } finally {
    await guest.stop();
  }
}

const med = (samples: Sample[], pick: (s: Sample) => number): number => median(samples.map(pick));

type Result = { name: string; flags: string; tcgTbSizeMiB?: number; samples: Sample[] };

/** BENCH_AGENT_STARTUP_IMAGES' images, `BOOTS` rounds, each round booting every image once. */
async function compareImages(spec: string): Promise<Result[]> {
  const images = spec.split(';').filter((item) => item.trim()).map((item) => {
    const at = item.indexOf('=');
    if (at <= 0) throw new Error(`BENCH_AGENT_STARTUP_IMAGES: "${item}" is not name=directory`);
    return { name: item.slice(0, at).trim(), dir: item.slice(at + 1).trim() };
  });
  const results: Result[] = images.map(({ name }) => ({ name, flags: '', samples: [] }));
  for (let round = 1; round <= BOOTS; round++) {
    for (const [i, image] of images.entries()) {
      say(`${image.name}: boot ${round}/${BOOTS}`);
      results[i].samples.push(await boot(image.dir, undefined));
    }
  }
  return results;
}

async function main(): Promise<void> {
  const imagesSpec = process.env.BENCH_AGENT_STARTUP_IMAGES;
  const results: Result[] = imagesSpec ? await compareImages(imagesSpec) : await compareFlags();
  const text = table(results, !imagesSpec);
  if (!imagesSpec) fs.writeFileSync(path.join(benchDir(), 'agent-startup.md'), text);
  process.stdout.write(text);
}

async function compareFlags(): Promise<Result[]> {
  const scratch = fs.mkdtempSync(path.join(SCRATCH_PARENT, 'kt-agent-startup-'));
  const results: Result[] = [];
  try {
    for (const variant of VARIANTS) {
      say(`${variant.name}: building the guest (AGENT_NODE_FLAGS="${variant.flags}")`);
      const imageDir = buildVariant(variant.flags, scratch);
      const samples: Sample[] = [];
      for (let i = 1; i <= BOOTS; i++) {
        say(`${variant.name}: boot ${i}/${BOOTS}`);
        samples.push(await boot(imageDir, variant.tcgTbSizeMiB));
      }
      results.push({ ...variant, samples });
    }
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
  return results;
}

/** The results as bench/agent-startup.md; `byFlags`: the flag variants' header, else the images'. */
function table(results: Result[], byFlags: boolean): string {
  const base = results[0].samples;
  const ratio = (value: number, baseline: number): string => (value / baseline).toFixed(2);
  const rows = results.map(({ name, flags, samples }) => {
    const ready = med(samples, (s) => s.readyMs);
    const node = med(samples, (s) => s.startup.nodeMs);
    const modules = med(samples, (s) => s.startup.modulesMs);
    const init = med(samples, (s) => s.startup.initMs);
    const agent = node + modules + init;
    const baseAgent = med(base, (s) => s.startup.nodeMs + s.startup.modulesMs + s.startup.initMs);
    return `| ${name} | ${flags ? `\`${flags}\`` : '–'} | ${(ready / 1000).toFixed(2)} s (${ratio(ready, med(base, (s) => s.readyMs))}) | ${(agent / 1000).toFixed(2)} s (${ratio(agent, baseAgent)}) | ${node} / ${modules} / ${init} ms | ${med(samples, (s) => s.startup.uptimeS).toFixed(2)} s | ${med(samples, (s) => s.callUs).toFixed(0)} µs (${ratio(med(samples, (s) => s.callUs), med(base, (s) => s.callUs))}) | ${med(samples, (s) => s.qemuPrivateMiB).toFixed(0)} MiB |`;
  });
  const how = byFlags
    ? `Each variant is the same guest built with other node flags (guest/build.sh AGENT_NODE_FLAGS), booted ${BOOTS} times straight through the QEMU driver; medians. Ratios are to the agent started with no flags (lower is better); the guest ships with \`--jitless --no-memory-reducer\`.`
    : `BENCH_AGENT_STARTUP_IMAGES: already-built guests, booted straight through the QEMU driver in ${BOOTS} interleaved rounds; medians. Ratios are to the first image (lower is better).`;
  return [
    '# The Node agent\'s start-up in a cold boot',
    '',
    `\`make bench-agent-startup\` on ${new Date().toISOString().slice(0, 10)} (${os.cpus().length} cores, ${os.release()}, QEMU TCG, our kernel + DAX rootfs, 1 vCPU, 1 GiB). ${how}`,
    '',
    `The agent${byFlags ? '' : ' of the first image'} loads ${base[0].startup.modules} JavaScript files. "node / modules / main" is its own report: Node's bootstrap (process start to user code), loading main.js and everything it requires, and main() until it serves the channel. "Guest uptime" is when the agent was ready, by the guest's clock.`,
    '',
    '| agent started with | flags | QEMU start → agent\'s first answer | agent start-up | node / modules / main | guest uptime at ready | GetGuestMetrics round trip, median of ' + CALLS + ' | QEMU private memory |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
    '',
  ].join('\n');
}

main().catch((err) => {
  process.stderr.write(`bench-agent-startup: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
