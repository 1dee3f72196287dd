// Pods started from a template VM ([factory] enable_template): real containerd, real
// QEMU (TCG). The first pod makes the template; every pod after is a clone of it.
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { diffSnapshots, HostSnapshot, snapshotHost, waitForNoLeaks } from '../harness/leaks';
import { run as runCommand } from '../harness/exec';
import { waitFor } from '../harness/wait';
import { statField } from '../../lib/proc-stat';
import { processStartTime, ProcessRecord, readTrimmed, recordAlive } from '../../lib/recorded-process';
import { removeCgroupTree } from '../harness/cgroups';
import { expectCtrOk, KataEnv, RUNTIME, RUNTIME_CLI, startKataEnv } from './kata-env';

jest.setTimeout(600_000);

/** A pod-level memory limit (set as kubelet would) that a clone with its shim fits in (about 110 MiB at its peak), and a template's boot does not. */
const SMALL_POD_LIMIT = 192 * 1024 * 1024;

describe('VM templates', () => {
  let env: KataEnv;
  let templatePath: string;
  let baseline: HostSnapshot;

  beforeAll(async () => {
    templatePath = fs.mkdtempSync('/var/tmp/kt-templates-');
    env = await startKataEnv({ factory: { enableTemplate: true, templatePath } });
    baseline = await snapshotHost({ dirs: [env.stateDir, env.containerd.state] });
  });

  afterAll(async () => {
    await env?.stop();
    if (templatePath) fs.rmSync(templatePath, { recursive: true, force: true });
  });

  function templates(): string[] {
    return fs.readdirSync(templatePath).filter((e) => !e.startsWith('.'));
  }

  function meta(): { createdAt: string; stateSha256: string; nextAgentStreamId: number } {
    const [dir] = templates();
    return JSON.parse(fs.readFileSync(path.join(templatePath, dir, 'template.json'), 'utf8'));
  }

  /** The shim's log lines for one pod (containerd collects them). */
  function shimLog(id: string): string {
    return env.containerd.logs().split('\n').filter((l) => l.includes(id)).join('\n');
  }

  function shimSays(id: string, message: string): boolean {
    return shimLog(id).includes(message);
  }

  async function run(id: string, script: string): Promise<string> {
    const result = await env.containerd.ctr(['run', '--rm', '--runtime', RUNTIME, env.image, id, 'sh', '-c', script], { timeoutMs: 400_000 });
    expectCtrOk(result, () => env.containerd.logs(), id);
    return result.stdout;
  }

  function factory(action: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return runCommand(process.execPath, [RUNTIME_CLI, 'factory', action], { timeoutMs: 300_000, env: { ...process.env, KATATS_CONFIG: env.configPath } });
  }

  const ENTROPY_AND_CLOCK = 'head -c 16 /dev/urandom | od -An -tx1 | tr -d " \\n"; echo; date +%s; cat /proc/sys/kernel/random/boot_id; dmesg | grep -c "crng reseeded due to virtual machine fork"';

  /** The QEMU whose parent is `pid`, once it has exec'd (setpriv runs first under the same pid), as a record of it. */
  function qemuChildOf(pid: number): ProcessRecord | undefined {
    for (const entry of fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
      const stat = readTrimmed(`/proc/${entry}/stat`);
      const ppid = statField(stat, 4);
      const record: ProcessRecord = { pid: Number(entry), startTime: processStartTime(Number(entry)) ?? -1 };
      if (ppid === pid && readTrimmed(`/proc/${entry}/comm`).startsWith('qemu-system') && recordAlive(record)) return record;
    }
    return undefined;
  }

  it('takes the template VM down with a factory init killed mid-build; the next init takes its lock over', async () => {
    const init = spawn(process.execPath, [RUNTIME_CLI, 'factory', 'init'], { env: { ...process.env, KATATS_CONFIG: env.configPath }, stdio: 'ignore' });
    const exited = new Promise((r) => init.once('exit', r));
    const qemu = await waitFor('the template VM of factory init', () => qemuChildOf(init.pid!), 60_000, 100);
    // Past its start-up (QMP up, recorded in the lock), booting on towards its agent.
    await waitFor('the template VM to answer QMP', () => (fs.readdirSync(templatePath).some((e) => e.startsWith('.building-') && fs.existsSync(path.join(templatePath, e, 'qmp.sock'))) ? true : undefined), 60_000, 100);
    init.kill('SIGKILL');
    await exited;
    // Nothing else would end it: before, it booted on to its agent and waited there.
    await waitFor('the template VM to die with its maker', () => (recordAlive(qemu) ? undefined : true), 10_000, 100);
    expect(templates()).toEqual([]);
    const again = await factory('init');
    expect(again).toMatchObject({ code: 0, stdout: expect.stringMatching(/^template ready: /) });
    expect(templates()).toHaveLength(1);
    expect(fs.readdirSync(templatePath).filter((e) => e.startsWith('.'))).toEqual([]);
    // The next case makes its own.
    expect((await factory('destroy')).code).toBe(0);
    expect(templates()).toEqual([]);
  });

  it('makes the template ahead of time (factory init), which the pods then clone', async () => {
    const init = await factory('init');
    expect(init).toMatchObject({ code: 0, stdout: expect.stringMatching(/^template ready: /) });
    const [key] = templates();
    expect((await factory('status')).stdout).toContain(`${key}  `);
    expect((await factory('status')).stdout).toContain('(this configuration)');
    expect((await run('tpl-0', 'echo from a clone')).trim()).toBe('from a clone');
    expect(shimLog('tpl-0')).toContain('VM started from its template');
    expect(shimSays('tpl-0', 'making a VM template')).toBe(false);
    expect(templates()).toEqual([key]);
  });

  it('makes a template on first use, and clones differ in entropy and keep the host clock', async () => {
    expect((await factory('destroy')).stdout).toMatch(/^removed 1 template /);
    expect(templates()).toEqual([]);
    const outputs: Array<{ random: string; clockSkew: number; bootId: string; reseeds: string }> = [];
    for (const id of ['tpl-1', 'tpl-2', 'tpl-3']) {
      const started = Date.now() / 1000;
      const [random, seconds, bootId, reseeds] = (await run(id, ENTROPY_AND_CLOCK)).trim().split('\n');
      const ended = Date.now() / 1000;
      // The guest read its clock between the two host readings; how far outside them it was.
      const guest = Number(seconds);
      outputs.push({ random, clockSkew: Math.max(0, started - (guest + 1), guest - ended), bootId, reseeds });
      expect(shimLog(id)).toContain('VM started from its template');
      expect(shimSays(id, 'making a VM template')).toBe(id === 'tpl-1');
    }
    expect(templates()).toHaveLength(1);
    // One template, root's only: every clone's RAM starts as its pages.
    const dir = path.join(templatePath, templates()[0]);
    expect((fs.statSync(dir).mode & 0o777).toString(8)).toBe('700');
    expect(fs.readdirSync(dir).sort()).toEqual(['memory', 'state', 'template.json']);
    // Where the clones' agent calls start: past every boot poll of the template's session.
    expect(meta().nextAgentStreamId % 2).toBe(1);
    expect(meta().nextAgentStreamId).toBeGreaterThanOrEqual(3);
    // vmgenid: each clone's kernel reseeded its RNG, so no two read the same bytes.
    expect(outputs.map((o) => o.random)).toHaveLength(3);
    expect(new Set(outputs.map((o) => o.random)).size).toBe(3);
    for (const o of outputs) expect(o.random).toMatch(/^[0-9a-f]{32}$/);
    // The reseed was vmgenid's, not the kernel's timed one; and each clone made its own boot_id after it.
    expect(outputs.map((o) => o.reseeds)).toEqual(['1', '1', '1']);
    expect(new Set(outputs.map((o) => o.bootId)).size).toBe(3);
    // SetGuestDateTime: the clone does not keep the template's time (saved 10 s and more
    // before the second and third pods); `date +%s` truncates, hence guest + 1 above.
    for (const o of outputs) expect(o.clockSkew).toBeLessThanOrEqual(2);
    const leaks = await waitForNoLeaks(baseline, 20_000);
    expect(leaks).toEqual([]);
  });

  it('replaces a corrupt template before cloning from it', async () => {
    const before = meta();
    const [dir] = templates();
    const state = path.join(templatePath, dir, 'state');
    const bytes = fs.readFileSync(state);
    bytes[bytes.length >> 1] ^= 0xff;
    fs.writeFileSync(state, bytes);
    expect((await run('tpl-corrupt', 'echo ok')).trim()).toBe('ok');
    expect(shimLog('tpl-corrupt')).toContain('VM template is stale or corrupt; replacing it');
    expect(shimLog('tpl-corrupt')).toContain('VM started from its template');
    expect(meta().createdAt).not.toBe(before.createdAt);

    // A write into the RAM file (what a compromised VMM with it open could do) is refused too.
    const rebuilt = meta();
    const memory = path.join(templatePath, templates()[0], 'memory');
    const fd = fs.openSync(memory, 'r+');
    fs.writeSync(fd, Buffer.from([0x90]), 0, 1, 4096);
    fs.closeSync(fd);
    expect((await run('tpl-memory', 'echo ok')).trim()).toBe('ok');
    expect(shimLog('tpl-memory')).toContain('its memory file was changed or replaced after it was saved');
    expect(shimLog('tpl-memory')).toContain('VM started from its template');
    expect(meta().createdAt).not.toBe(rebuilt.createdAt);
  });

  it('boots cold when a template cannot be restored, and the next pod gets a new one', async () => {
    // A state file QEMU cannot load, described as valid: only the restore finds out.
    const [dir] = templates();
    const state = path.join(templatePath, dir, 'state');
    fs.writeFileSync(state, Buffer.from('not a QEMU migration stream'));
    const metaFile = path.join(templatePath, dir, 'template.json');
    const described = JSON.parse(fs.readFileSync(metaFile, 'utf8'));
    described.stateSha256 = require('crypto').createHash('sha256').update(fs.readFileSync(state)).digest('hex');
    fs.writeFileSync(metaFile, JSON.stringify(described));
    expect((await run('tpl-cold', 'echo cold')).trim()).toBe('cold');
    expect(shimLog('tpl-cold')).toContain('the clone did not start: its template cannot be restored; removing it and booting cold');
    expect(shimSays('tpl-cold', 'VM started from its template')).toBe(false);
    expect(templates()).toEqual([]);
    expect((await run('tpl-after', 'echo again')).trim()).toBe('again');
    expect(shimLog('tpl-after')).toContain('VM started from its template');
    expect(templates()).toHaveLength(1);
    const leaks = await waitForNoLeaks(baseline, 20_000);
    expect(leaks).toEqual([]);
  });

  it("makes a template outside the pod's cgroup: the template's boot is not charged to the pod that asked for it", async () => {
    expect((await factory('destroy')).code).toBe(0);
    const parent = `kt-small-${process.pid}`;
    const memory = path.join('/sys/fs/cgroup/memory', parent);
    fs.mkdirSync(memory);
    fs.writeFileSync(path.join(memory, 'memory.limit_in_bytes'), String(SMALL_POD_LIMIT));
    try {
      const result = await env.containerd.ctr(['run', '--rm', '--runtime', RUNTIME, '--cgroup', `/${parent}/tpl-small`, env.image, 'tpl-small', 'sh', '-c', 'echo small'], { timeoutMs: 400_000 });
      expectCtrOk(result, () => env.containerd.logs(), 'tpl-small');
      expect(result.stdout.trim()).toBe('small');
      // The template's boot (it was made for this pod) was not charged to the pod: its cgroup never met its limit.
      expect(fs.readFileSync(path.join(memory, 'memory.failcnt'), 'utf8').trim()).toBe('0');
      expect(shimLog('tpl-small')).toContain('making a VM template');
      expect(shimLog('tpl-small')).toContain('VM started from its template');
      expect(templates()).toHaveLength(1);
    } finally {
      expect(removeCgroupTree(`/${parent}`).failed).toEqual([]);
    }
  });

  it('leaves no process, mount or socket of the template behind, and factory destroy removes the templates', async () => {
    const now = await snapshotHost({ dirs: [env.stateDir, env.containerd.state] });
    expect(diffSnapshots(baseline, now)).toEqual([]);
    expect(fs.readdirSync(templatePath).filter((e) => e.startsWith('.'))).toEqual([]);
    expect((await factory('destroy')).code).toBe(0);
    expect(fs.readdirSync(templatePath)).toEqual([]);
  });
});
