// kata-ts-runtime check must tell the truth about this host: each verdict is
// compared with what the test can observe itself, and with the other verdicts.
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { promisify } from 'util';
import { HostSnapshot, snapshotHost, waitForNoLeaks } from '../harness/leaks';
import { REPO, writeConfig } from './kata-env';

const execFileAsync = promisify(execFile);
jest.setTimeout(300_000);
const CLI = path.join(REPO, 'dist', 'cli', 'main.js');

function opens(device: string): boolean {
  try {
    fs.closeSync(fs.openSync(device, 'r+'));
    return true;
  } catch {
    return false;
  }
}

async function check(config: string): Promise<{ code: number; lines: Map<string, { verdict: string; detail: string }> }> {
  let stdout: string;
  let code = 0;
  try {
    ({ stdout } = await execFileAsync(process.execPath, [CLI, 'check', '--kvm-timeout', '20'], { env: { ...process.env, KATATS_CONFIG: config } }));
  } catch (err) {
    const e = err as { code: number; stdout: string };
    ({ stdout, code } = e);
  }
  const lines = new Map<string, { verdict: string; detail: string }>();
  // formatChecks writes fixed columns: verdict (5), name (14), detail.
  for (const line of stdout.trim().split('\n')) {
    lines.set(line.slice(6, 20).trim(), { verdict: line.slice(0, 5).trim(), detail: line.slice(21) });
  }
  return { code, lines };
}

describe('kata-ts-runtime check', () => {
  let dir: string;
  let before: HostSnapshot;
  beforeAll(async () => {
    before = await snapshotHost();
    dir = fs.mkdtempSync('/tmp/kt-check-test-');
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('reports what this host can do, consistently with what the test observes', async () => {
    const tcgConfig = path.join(dir, 'tcg.json');
    writeConfig(tcgConfig, path.join(dir, 'vm'));
    const tcg = await check(tcgConfig);
    expect(tcg.lines.get('qemu')).toMatchObject({ verdict: 'PASS' });
    expect(tcg.lines.get('guest image')).toMatchObject({ verdict: 'PASS' });
    expect(tcg.lines.get('tcg boot')).toMatchObject({ verdict: 'PASS' });
    expect(tcg.lines.get('kvm device')?.verdict).toBe(opens('/dev/kvm') ? 'PASS' : 'WARN');
    expect(tcg.lines.get('vhost-vsock')?.verdict).toBe(opens('/dev/vhost-vsock') ? 'PASS' : 'WARN');
    // The default ksm = "unchanged": the line reports the switch as the test reads it.
    const ksmRun = fs.existsSync('/sys/kernel/mm/ksm/run') ? fs.readFileSync('/sys/kernel/mm/ksm/run', 'utf8').trim() : undefined;
    expect(tcg.lines.get('ksm')).toMatchObject({ verdict: 'PASS', detail: expect.stringContaining(ksmRun === undefined ? 'this host has no KSM' : `run = ${ksmRun} (`) });
    expect(tcg.lines.get('configuration')).toMatchObject({ verdict: 'PASS', detail: 'accelerator = "tcg" boots guests' });
    expect(tcg.code).toBe(0);
    expect(tcg.lines.get('shared fs')).toMatchObject({ verdict: 'PASS', detail: expect.stringContaining('virtio-9p') });

    // With virtio-fs the boot probe goes through virtiofsd, as sandboxes do.
    const vfsConfig = path.join(dir, 'virtio-fs.json');
    writeConfig(vfsConfig, path.join(dir, 'vm'), { hypervisor: { sharedFs: 'virtio-fs' } });
    const vfs = await check(vfsConfig);
    expect(vfs.lines.get('shared fs')).toMatchObject({ verdict: 'PASS', detail: expect.stringContaining('virtio-fs through /usr/lib/qemu/virtiofsd') });
    expect(vfs.lines.get('tcg boot')).toMatchObject({ verdict: 'PASS' });
    expect(vfs.code).toBe(0);

    // With accelerator = "kvm", the configuration verdict must follow the KVM boot probe.
    const kvmConfig = path.join(dir, 'kvm.json');
    writeConfig(kvmConfig, path.join(dir, 'vm'), { hypervisor: { accelerator: 'kvm' } });
    const kvm = await check(kvmConfig);
    const kvmBoots = kvm.lines.get('kvm boot')?.verdict === 'PASS';
    expect(kvm.lines.get('configuration')?.verdict).toBe(kvmBoots ? 'PASS' : 'FAIL');
    expect(kvm.code).toBe(kvmBoots ? 0 : 1);
    if (!kvmBoots && opens('/dev/kvm')) expect(kvm.lines.get('kvm boot')?.detail).toContain('/dev/kvm opens but a test guest did not boot');
    expect(await waitForNoLeaks(before, 20_000)).toEqual([]);
  });
});
