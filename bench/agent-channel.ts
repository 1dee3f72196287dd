// `make bench-agent-channel`: the agent reached over virtio-serial and over hybrid vsock
// (vhost-user-vsock-pci + vhost-device-vsock, the guest's katats-vsock-relay), the same
// guest booted straight through the QEMU driver, side by side in one run. Writes
// bench/agent-channel.md.
//
// The call is GetGuestMetrics: a small request, an answer of about 1 KiB read from the
// guest's /proc, no container and no process spawned (GetGuestDetails runs crun), so
// the time is the channel's and the agent's own.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { bootToAgent, guestVariants } from '../tests/harness/guest-vm';
import { benchDir } from './guest-boot';
import { median } from './measure';

const CALLS = Number(process.env.BENCH_AGENT_CALLS ?? 1000);
const CHANNELS = ['virtio-serial', 'hybrid-vsock'] as const;
type Channel = (typeof CHANNELS)[number];

interface Measures {
  readyMs: number;
  medianUs: number;
  p90Us: number;
}

function say(line: string): void {
  process.stderr.write(`bench-agent-channel: ${line}\n`);
}

async function measure(channel: Channel, vsockBackend: string): Promise<Measures> {
  say(`${channel}: booting`);
  const guest = await bootToAgent(guestVariants().dax, channel === 'hybrid-vsock' ? { vsockBackend } : {});
  try {
    say(`${channel}: ${CALLS} calls`);
    const samples: number[] = [];
    for (let i = 0; i < CALLS; i++) {
      const started = process.hrtime.bigint();
      await guest.agent.guestMetrics();
      samples.push(Number(process.hrtime.bigint() - started) / 1000);
    }
    samples.sort((a, b) => a - b);
    return { readyMs: guest.readyMs, medianUs: median(samples), p90Us: samples[Math.floor(samples.length * 0.9)] };
  } finally {
    await guest.stop();
  }
}

async function main(): Promise<void> {
  const vsockBackend = process.env.KATATS_VSOCK_BACKEND;
  if (!vsockBackend) throw new Error('KATATS_VSOCK_BACKEND must name vhost-device-vsock (make bench-agent-channel fetches it)');
  const results = {} as Record<Channel, Measures>;
  for (const channel of CHANNELS) results[channel] = await measure(channel, vsockBackend);
  const [serial, vsock] = CHANNELS.map((c) => results[c]);
  const text = [
    '# Agent channel: virtio-serial against hybrid vsock',
    '',
    `\`make bench-agent-channel\` on ${new Date().toISOString().slice(0, 10)} (${os.cpus().length} cores, ${os.release()}, QEMU TCG, our kernel + DAX rootfs, vhost-device-vsock from Debian unstable).`,
    'Same guest, one run, booted through the QEMU driver with no containerd; vsock goes through the guest\'s katats-vsock-relay (Node has no AF_VSOCK).',
    '',
    '| measure | virtio-serial | hybrid vsock | vsock / serial |',
    '| --- | --- | --- | --- |',
    `| agent GetGuestMetrics round trip, median of ${CALLS} | ${serial.medianUs.toFixed(0)} µs | ${vsock.medianUs.toFixed(0)} µs | ${(vsock.medianUs / serial.medianUs).toFixed(2)} |`,
    `| same, 90th percentile | ${serial.p90Us.toFixed(0)} µs | ${vsock.p90Us.toFixed(0)} µs | ${(vsock.p90Us / serial.p90Us).toFixed(2)} |`,
    `| QEMU start → agent's first answer | ${(serial.readyMs / 1000).toFixed(2)} s | ${(vsock.readyMs / 1000).toFixed(2)} s | ${(vsock.readyMs / serial.readyMs).toFixed(2)} |`,
    '',
  ].join('\n');
  fs.writeFileSync(path.join(benchDir(), 'agent-channel.md'), text);
  process.stdout.write(text);
}

main().catch((err) => {
  process.stderr.write(`bench-agent-channel: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
