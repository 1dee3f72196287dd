// Guest kernels side by side: our kernel (Debian's linux-source with our fragments, all
// built in) against Debian's generic kernel (modules loaded from the initrd), and the
// DAX rootfs image against the initrd: boot to agent-ready, host memory of an idle VM,
// and what each needs on disk. Part of `make bench`; `make bench-guest` runs it alone
// and writes bench/guest-boot.md.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { bootToAgent, GUEST_CURRENT, guestRamKiB, guestVariants, memoryOf } from '../tests/harness/guest-vm';
import { median } from './measure';

export interface GuestBootResult {
  /** A markdown table: header, separator, rows. */
  table: string[];
}

const MEMORY_MIB = 512;
const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

export async function measureGuestBoot(samples: number, say: (line: string) => void): Promise<GuestBootResult> {
  const variants = guestVariants();
  const image = fs.realpathSync(GUEST_CURRENT);
  const manifest = JSON.parse(fs.readFileSync(path.join(image, 'manifest.json'), 'utf8')) as { kernelVersion: string; debianKernelVersion: string; kernelPackage: string; debianModulesBytes: number };
  const boot: Record<keyof typeof variants, { readyMs: number; ussKiB: number; ramKiB: number }> = {} as never;
  for (const key of ['dax', 'initrd', 'debian'] as const) {
    const ready: number[] = [];
    const uss: number[] = [];
    const ram: number[] = [];
    for (let i = 0; i < samples; i++) {
      const guest = await bootToAgent(variants[key], { memoryMiB: MEMORY_MIB });
      try {
        ready.push(guest.readyMs);
        await new Promise((r) => setTimeout(r, 3000)); // let the idle guest settle
        uss.push(memoryOf(guest.hypervisor.pid()!).uss);
        ram.push(guestRamKiB(guest.hypervisor.pid()!, MEMORY_MIB));
      } finally {
        await guest.stop();
      }
      say(`${variants[key].name}: agent ready after ${guest.readyMs} ms`);
    }
    boot[key] = { readyMs: median(ready), ussKiB: median(uss), ramKiB: median(ram) };
  }
  const size = (name: string): number => fs.statSync(path.join(image, name)).size;
  const ratio = (ours: number, theirs: number): string => `${(ours / theirs).toFixed(2)}×`;
  const rows = [
    `| boot to agent-ready, initrd (median of ${samples}) | ${(boot.debian.readyMs / 1000).toFixed(1)} s | ${(boot.initrd.readyMs / 1000).toFixed(1)} s | ${ratio(boot.initrd.readyMs, boot.debian.readyMs)} |`,
    `| boot to agent-ready, our kernel with rootfs.img (DAX) instead (median of ${samples}) | ${(boot.debian.readyMs / 1000).toFixed(1)} s | ${(boot.dax.readyMs / 1000).toFixed(1)} s | ${ratio(boot.dax.readyMs, boot.debian.readyMs)} |`,
    `| kernel image (ELF vmlinux, PVH boot) | ${mib(size('vmlinux-debian'))} | ${mib(size('vmlinux'))} | ${ratio(size('vmlinux'), size('vmlinux-debian'))} |`,
    `| kernel image (bzImage) | ${mib(size('vmlinuz-debian'))} | ${mib(size('vmlinuz'))} | ${ratio(size('vmlinuz'), size('vmlinuz-debian'))} |`,
    // Debian's kernel loads its drivers from the rootfs (lib/modules/<version>).
    `| kernel modules the guest needs | ${mib(manifest.debianModulesBytes)} | none (all built in) | – |`,
    `| guest RAM in use when idle, initrd | ${mib(boot.debian.ramKiB * 1024)} | ${mib(boot.initrd.ramKiB * 1024)} | ${ratio(boot.initrd.ramKiB, boot.debian.ramKiB)} |`,
    `| guest RAM in use when idle, our kernel with rootfs.img (DAX) | ${mib(boot.debian.ramKiB * 1024)} | ${mib(boot.dax.ramKiB * 1024)} | ${ratio(boot.dax.ramKiB, boot.debian.ramKiB)} |`,
    `| host private memory of an idle VM, initrd | ${mib(boot.debian.ussKiB * 1024)} | ${mib(boot.initrd.ussKiB * 1024)} | ${ratio(boot.initrd.ussKiB, boot.debian.ussKiB)} |`,
    `| host private memory of an idle VM, our kernel with rootfs.img (DAX) | ${mib(boot.debian.ussKiB * 1024)} | ${mib(boot.dax.ussKiB * 1024)} | ${ratio(boot.dax.ussKiB, boot.debian.ussKiB)} |`,
    `| rootfs as shipped: initrd.img (copied into every VM) / rootfs.img (shared by all) | ${mib(size('initrd.img'))} | ${mib(size('rootfs.img'))} | – |`,
  ];
  say(`guest kernels: ours ${manifest.kernelVersion}, Debian's ${manifest.debianKernelVersion} (${manifest.kernelPackage})`);
  return { table: [`| **guest** (Debian ${manifest.debianKernelVersion} vs ours ${manifest.kernelVersion}) | Debian's kernel | our kernel | ratio |`, '| --- | --- | --- | --- |', ...rows] };
}

export const GUEST_BOOT_INTRO =
  'The same rootfs booted by QEMU (TCG, 512 MiB, 1 vCPU) straight to agent-ready, one VM at a time; ratio = ours / Debian\'s (lower is better). ' +
  '"Host private memory" is the QEMU process\'s unshared resident memory (under TCG it includes the code translation cache).';

async function main(): Promise<void> {
  const samples = Number(process.env.BENCH_BOOT_SAMPLES ?? 3);
  const say = (line: string): void => void process.stderr.write(`bench: ${line}\n`);
  const { table } = await measureGuestBoot(samples, say);
  const report = ['# Guest kernels and rootfs formats', '', `Measured ${new Date().toISOString()} on ${os.cpus().length} cores. ${GUEST_BOOT_INTRO}`, '', ...table, ''].join('\n');
  fs.writeFileSync(path.join(benchDir(), 'guest-boot.md'), report);
  process.stdout.write(report);
}

/** bench/ in the repository, whether this runs from the sources or from dist/. */
export function benchDir(): string {
  return path.join(__dirname.includes(`${path.sep}dist${path.sep}`) ? path.resolve(__dirname, '..', '..') : path.resolve(__dirname, '..'), 'bench');
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  });
}
