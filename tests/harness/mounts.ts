// /proc/self/mounts reader shared by containerd.ts (teardown) and leaks.ts (snapshots).

import * as fs from 'fs';

export interface MountEntry {
  source: string;
  target: string;
  fstype: string;
  options: string;
}

/** The kernel escapes space, tab, newline and backslash in mount fields as \ooo octal. */
export function decodeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export async function readMounts(): Promise<MountEntry[]> {
  const text = await fs.promises.readFile('/proc/self/mounts', 'utf8');
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 4) continue;
    out.push({
      source: decodeMountField(f[0]),
      target: decodeMountField(f[1]),
      fstype: f[2],
      options: f[3],
    });
  }
  return out;
}

export async function readMountPoints(): Promise<string[]> {
  return (await readMounts()).map((m) => m.target);
}
