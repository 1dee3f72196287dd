// Bad input gets a clear error and leaves nothing behind.
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { promisify } from 'util';
import { lookupService, TASK_SERVICE } from '../../lib/protos';
import { Code, TtrpcClient, TtrpcError } from '../../ttrpc';
import { snapshotHost, waitForNoLeaks } from '../harness/leaks';
import { KataEnv, RUNTIME, startKataEnv, writeConfig, writeShimLauncher } from './kata-env';

const execFileAsync = promisify(execFile);
jest.setTimeout(240_000);

/** A directory laid out like containerd's state dir, with one bundle per id. */
function fakeStateDir(): { root: string; bundle(id: string, configJson: string): string } {
  const root = fs.mkdtempSync('/tmp/kt-bad-');
  return {
    root,
    bundle(id, configJson) {
      const dir = path.join(root, 'state', 'io.containerd.runtime.v2.task', 'ns1', id);
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, 'config.json'), configJson);
      return dir;
    },
  };
}

async function runShim(launcher: string, bundle: string, id: string, action: string, env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(launcher, ['-namespace', 'ns1', '-address', '/tmp/kt-none.sock', '-publish-binary', '/bin/true', '-id', id, action], { cwd: bundle, env: { ...process.env, ...env } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('bad input', () => {
  it('a missing QEMU binary fails the run with an actionable message and leaves nothing', async () => {
    const before = await snapshotHost();
    let env: KataEnv | undefined;
    try {
      env = await startKataEnv({ hypervisor: { path: '/nonexistent/qemu-system-x86_64' } });
      const result = await env.containerd.ctr(['run', '--rm', '--runtime', RUNTIME, env.image, 'noqemu', 'true'], { timeoutMs: 120_000 });
      expect(result.code).not.toBe(0);
      expect(result.stderr).toContain("QEMU binary '/nonexistent/qemu-system-x86_64' is not usable");
      const left = fs.existsSync(env.stateDir) ? fs.readdirSync(env.stateDir) : [];
      expect(left).toEqual([]);
      await env.containerd.ctr(['containers', 'rm', 'noqemu']);
    } finally {
      await env?.stop();
    }
    expect(await waitForNoLeaks(before, 20_000)).toEqual([]);
  });

  describe('a bundle whose config.json is not JSON', () => {
    let state: ReturnType<typeof fakeStateDir>;
    let launcher: string;
    let env: NodeJS.ProcessEnv;

    beforeAll(() => {
      state = fakeStateDir();
      const bin = path.join(state.root, 'bin');
      fs.mkdirSync(bin);
      launcher = writeShimLauncher(bin);
      const configPath = path.join(state.root, 'config.json');
      writeConfig(configPath, path.join(state.root, 'vm'));
      env = { KATATS_CONFIG: configPath, TTRPC_ADDRESS: path.join(state.root, 'no-containerd.ttrpc') };
    });
    afterAll(() => fs.rmSync(state.root, { recursive: true, force: true }));

    it('is refused by `start` without starting a daemon', async () => {
      const before = await snapshotHost({ dirs: [state.root] });
      const bundle = state.bundle('broken', '{"ociVersion": "1.0.2", oops');
      const result = await runShim(launcher, bundle, 'broken', 'start', env);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(`OCI spec ${bundle}/config.json is not valid JSON`);
      expect(result.stdout).toBe('');
      expect(fs.existsSync(path.join(bundle, 'address'))).toBe(false);
      expect(await waitForNoLeaks(before, 5_000)).toEqual([]);
    });

    it('is refused by Create with INVALID_ARGUMENT, before any VM starts', async () => {
      const before = await snapshotHost({ dirs: [state.root] });
      const good = state.bundle('good', JSON.stringify({ ociVersion: '1.0.2', process: { args: ['true'] }, root: { path: 'rootfs' } }));
      const started = await runShim(launcher, good, 'good', 'start', env);
      expect(started.stderr).toBe('');
      expect(started.stdout).toMatch(/^unix:\/\/.*\/state\/s\/[0-9a-f]{32}$/);
      const client = await TtrpcClient.connect(started.stdout.replace('unix://', ''));
      try {
        const broken = state.bundle('broken2', 'not json at all');
        const task = lookupService(TASK_SERVICE);
        const failure = await client.call(task, 'Create', { id: 'broken2', bundle: broken, rootfs: [] }, { timeoutMs: 30_000 }).catch((e: unknown) => e);
        expect(failure).toBeInstanceOf(TtrpcError);
        expect((failure as TtrpcError).code).toBe(Code.INVALID_ARGUMENT);
        expect((failure as TtrpcError).message).toContain(`OCI spec ${broken}/config.json is not valid JSON`);
        // A spec whose rootfs climbs out of the bundle would share a host directory with the VM.
        const escaping = state.bundle('escape', JSON.stringify({ ociVersion: '1.0.2', process: { args: ['true'] }, root: { path: '../../../..' } }));
        const refused = await client.call(task, 'Create', { id: 'escape', bundle: escaping, rootfs: [] }, { timeoutMs: 30_000 }).catch((e: unknown) => e);
        expect((refused as TtrpcError).code).toBe(Code.INVALID_ARGUMENT);
        expect((refused as TtrpcError).message).toMatch(/spec root.path "..\/..\/..\/.." resolves to .*, outside the bundle/);
        const badId = await client.call(task, 'Create', { id: '../evil', bundle: good, rootfs: [] }, { timeoutMs: 30_000 }).catch((e: unknown) => e);
        expect((badId as TtrpcError).code).toBe(Code.INVALID_ARGUMENT);
        expect((badId as TtrpcError).message).toContain('container id "../evil" is not valid');
        // The daemon is unharmed and, holding no container, exits on Shutdown.
        const connect = await client.call(task, 'Connect', { id: 'good' }, { timeoutMs: 5_000 });
        expect(connect.shim_pid).toBeGreaterThan(0);
        await client.call(task, 'Shutdown', { id: 'good' }, { timeoutMs: 5_000 }).catch(() => undefined);
      } finally {
        client.close();
      }
      expect(await waitForNoLeaks(before, 10_000)).toEqual([]);
    });

    it('a daemon that never gets a Create after start exits by itself', async () => {
      const before = await snapshotHost({ dirs: [state.root] });
      const bundle = state.bundle('abandoned', JSON.stringify({ ociVersion: '1.0.2', process: { args: ['true'] }, root: { path: 'rootfs' } }));
      const started = await runShim(launcher, bundle, 'abandoned', 'start', { ...env, KATATS_IDLE_EXIT_MS: '2000' });
      expect(started.stdout).toMatch(/^unix:\/\//);
      const pid = Number(fs.readFileSync(path.join(bundle, 'shim.pid'), 'utf8').split(' ')[0]);
      expect(fs.existsSync(`/proc/${pid}`)).toBe(true);
      expect(await waitForNoLeaks(before, 15_000)).toEqual([]);
    });
  });
});
