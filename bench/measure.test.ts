import { roundOrder, stopAll, vmmMemoryFromSmaps } from './measure';

/** One smaps entry: a header line and its Pss line. */
function mapping(start: number, sizeKiB: number, perms: string, name: string, pssKiB: number): string {
  const hex = (n: number): string => n.toString(16).padStart(12, '0');
  return `${hex(start)}-${hex(start + sizeKiB * 1024)} ${perms} 00000000 00:00 0          ${name}\nRss:  ${pssKiB} kB\nPss:  ${pssKiB} kB\n`;
}

describe('vmmMemoryFromSmaps', () => {
  it("splits a QEMU's PSS into guest RAM, translated code, the DAX rootfs and the rest", () => {
    const MiB = 1024;
    let at = 0x7f0000000000;
    const next = (sizeKiB: number): number => {
      const start = at;
      at += sizeKiB * 1024 + 4096;
      return start;
    };
    const smaps = [
      mapping(next(1024 * MiB), 1024 * MiB, 'rw-p', '', 200 * MiB), // a cold VM's anonymous RAM
      mapping(next(1024 * MiB), 1024 * MiB, 'rw-p', '/memfd:ram0 (deleted)', 10 * MiB), // vhost-user: memfd RAM
      mapping(next(1024 * MiB), 1024 * MiB, 'rw-p', '/var/lib/kata-ts/vm-templates/k/memory (deleted)', 5 * MiB), // a clone, template removed
      mapping(next(64 * MiB), 64 * MiB, 'rwxp', '', 30 * MiB), // TCG regions between guard pages
      mapping(next(64 * MiB), 64 * MiB, 'rwxp', '', 20 * MiB),
      mapping(next(4), 4, '---p', '', 0), // a guard page
      mapping(next(140 * MiB), 140 * MiB, 'r--s', '/usr/share/kata-ts/guest/rootfs.img', 7 * MiB),
      mapping(next(64 * MiB), 64 * MiB, 'rw-p', '', 3 * MiB), // a malloc arena
      mapping(next(20 * MiB), 20 * MiB, 'r-xp', '/usr/bin/qemu-system-x86_64', 2 * MiB),
    ].join('');
    expect(vmmMemoryFromSmaps(smaps)).toEqual({ guestRam: 215 * MiB, translatedCode: 50 * MiB, rootfsImage: 7 * MiB, rest: 5 * MiB });
  });
});

describe('roundOrder', () => {
  it('runs every arm once a round, each round starting with the next arm', () => {
    expect([0, 1, 2, 3].map((round) => roundOrder(3, round))).toEqual([
      [0, 1, 2],
      [1, 2, 0],
      [2, 0, 1],
      [0, 1, 2],
    ]);
  });
});

describe('stopAll', () => {
  const fail = (message: string) => Promise.reject(new Error(message));

  it('waits for every stop and throws a failed one after a good measurement', async () => {
    let second = false;
    const slow = new Promise<void>((r) => setTimeout(() => ((second = true), r()), 20));
    await expect(stopAll([fail('mount left'), slow], true, () => undefined)).rejects.toThrow('mount left');
    expect(second).toBe(true);
    await expect(stopAll([fail('a'), fail('b')], true, () => undefined)).rejects.toThrow('2 environments failed to stop cleanly');
  });

  it('only says a failed stop after a failed measurement, whose error is the one to see', async () => {
    const said: string[] = [];
    await stopAll([fail('mount left'), Promise.resolve()], false, (line) => said.push(line));
    expect(said).toEqual(['stopping an environment also failed: mount left']);
  });
});
