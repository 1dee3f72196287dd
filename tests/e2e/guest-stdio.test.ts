// Container stdio are pipes in the guest, as under runc (issue 16 A), and runc's
// kill semantics (issue 16 B), against real guests (QEMU TCG).
// A goes through containerd (`ctr run`, `ctr task exec`). B needs a container without
// a PID namespace of its own, which ctr cannot ask for (CRI can: a pod sharing its
// process namespace, or hostPID), so it talks to the guest agent directly, as the
// shim does, with the guest's real crun. Not covered here: B through CRI and the
// shim (the exit event of such a container, Kill's NotFound reaching containerd).
import * as fs from 'fs';
import * as path from 'path';
import { TtrpcError } from '../../ttrpc';
import { BootedGuest, bootToAgent, guestVariants } from '../harness/guest-vm';
import { HostSnapshot, snapshotHost, waitForNoLeaks } from '../harness/leaks';
import { KataEnv, RUNTIME, startKataEnv } from './kata-env';

jest.setTimeout(300_000);
const VM_MS = 240_000;
const NOT_FOUND = 5;

describe('container stdio through containerd', () => {
  let env: KataEnv;
  let baseline: HostSnapshot;

  beforeAll(async () => {
    env = await startKataEnv();
    baseline = await snapshotHost({ dirs: [env.stateDir, env.containerd.state] });
  });
  afterAll(async () => {
    await env?.stop();
  });

  const ctr = (args: string[], opts: { input?: string } = {}) => env.containerd.ctr(args, { timeoutMs: VM_MS, ...opts });

  it('gives the init pipes, not sockets: /dev/stdout and /proc/self/fd/2 open and reach ctr', async () => {
    const script = [
      'stat -L -c %F /proc/self/fd/1 /proc/self/fd/2',
      'readlink /proc/self/fd/1',
      'echo x > /dev/stdout',
      'echo y > /proc/self/fd/2',
      'echo z > /dev/stderr',
      // What nginx's and httpd's images do with their logs.
      'mkdir -p /var/log/app && ln -sf /dev/stdout /var/log/app/access.log && ln -sf /proc/self/fd/2 /var/log/app/error.log',
      'echo access >> /var/log/app/access.log && echo error >> /var/log/app/error.log',
    ].join('; ');
    const result = await ctr(['run', '--rm', '--runtime', RUNTIME, env.image, 'stdio-run', 'sh', '-c', script]);
    expect(result.code).toBe(0);
    const lines = result.stdout.split('\n');
    expect(lines.slice(0, 2)).toEqual(['fifo', 'fifo']);
    // A FIFO the agent made and unlinked; under runc it would read pipe:[…]. Never a socket.
    expect(lines[2]).toMatch(/ \(deleted\)$/);
    expect(lines[2]).not.toMatch(/socket/);
    expect(lines.slice(3)).toEqual(['x', 'access', '']);
    expect(result.stderr).toBe('y\nz\nerror\n');
  });

  it('gives stdin as a pipe too (ctr run always attaches it), and its end as EOF', async () => {
    const result = await ctr(['run', '--rm', '--runtime', RUNTIME, env.image, 'stdio-in', 'sh', '-c', 'stat -L -c %F /proc/self/fd/0; cat /dev/stdin | wc -c'], { input: 'twelve bytes' });
    expect(result).toMatchObject({ code: 0, stdout: 'fifo\n12\n' });
  });

  it("runs a container without stdio (--null-io, as a pod's pause container) to its end, its output read and dropped", async () => {
    // 4 MiB: more than the guest pipe and the agent's buffer hold. Its reads had reached
    // the agent before its Start and failed, so nothing drained it and it never ended.
    const result = await ctr(['run', '--rm', '--null-io', '--runtime', RUNTIME, env.image, 'stdio-null', 'sh', '-c', 'head -c 4194304 /dev/zero; echo err >&2; exit 3']);
    expect(result).toMatchObject({ code: 3, stdout: '' });
  });

  describe('an exec', () => {
    const id = 'stdio-exec';
    beforeAll(async () => {
      expect((await ctr(['run', '-d', '--runtime', RUNTIME, env.image, id, 'sleep', '600'])).code).toBe(0);
    });
    afterAll(async () => {
      await ctr(['task', 'kill', '-s', 'SIGKILL', id]);
      for (let i = 0; i < 100 && (await ctr(['task', 'ls', '-q'])).stdout.split('\n').includes(id); i++) {
        await ctr(['task', 'delete', id]);
        await new Promise((r) => setTimeout(r, 200));
      }
      await ctr(['containers', 'rm', id]);
      expect(await waitForNoLeaks(baseline, 20_000)).toEqual([]);
    });

    it('gets pipes as well', async () => {
      const result = await ctr(['task', 'exec', '--exec-id', 'e1', id, 'sh', '-c', 'stat -L -c %F /proc/self/fd/1; echo x > /dev/stdout; echo y > /proc/self/fd/2']);
      expect(result).toMatchObject({ code: 0, stdout: 'fifo\nx\n', stderr: 'y\n' });
    });

    it('as a user other than root, owns them and can reopen them', async () => {
      const result = await ctr(['task', 'exec', '--exec-id', 'e2', '--user', '1000', id, 'sh', '-c', 'id -u; stat -L -c %u /proc/self/fd/1; echo mine > /dev/stdout; echo also > /dev/stderr']);
      expect(result).toMatchObject({ code: 0, stdout: '1000\n1000\nmine\n', stderr: 'also\n' });
    });
  });
});

/** A busybox rootfs in the guest's share. */
function busyboxRootfs(dir: string): void {
  fs.mkdirSync(path.join(dir, 'bin'), { recursive: true });
  for (const d of ['proc', 'dev', 'tmp']) fs.mkdirSync(path.join(dir, d));
  fs.copyFileSync('/bin/busybox', path.join(dir, 'bin', 'busybox'));
  fs.chmodSync(path.join(dir, 'bin', 'busybox'), 0o755);
  for (const applet of ['sh', 'sleep', 'echo', 'ps', 'cat', 'true']) fs.symlinkSync('busybox', path.join(dir, 'bin', applet));
}

describe("runc's kill semantics in a guest (agent API)", () => {
  const SHARED_GUEST = '/run/kata-containers/shared/containers';
  let guest: BootedGuest;

  beforeAll(async () => {
    guest = await bootToAgent(guestVariants().dax, { memoryMiB: 512, bootTimeoutMs: VM_MS });
    busyboxRootfs(path.join(guest.workDir, 'shared', 'rootfs'));
    await guest.agent.createSandbox({ sandbox_id: 'kill-semantics', hostname: 'kill-semantics', shared_fs_tag: 'kataShared', shared_dir_guest_path: SHARED_GUEST, shared_fs_type: 'virtio-9p' });
  });
  afterAll(async () => {
    await guest?.stop();
  });

  /** Without a `pid` entry the container shares the guest's PID namespace (a pod's would have a path). */
  const SHARED_PID = [{ type: 'mount' }, { type: 'ipc' }, { type: 'uts' }];
  const OWN_PID = [...SHARED_PID, { type: 'pid' }];

  async function start(id: string, script: string, namespaces: Array<{ type: string }>): Promise<void> {
    const spec = {
      ociVersion: '1.0.2',
      process: { terminal: false, user: { uid: 0, gid: 0 }, args: ['sh', '-c', script], env: ['PATH=/bin'], cwd: '/' },
      root: { path: `${SHARED_GUEST}/rootfs`, readonly: true },
      mounts: [
        { destination: '/proc', type: 'proc', source: 'proc' },
        { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'mode=755'] },
      ],
      linux: { namespaces, cgroupsPath: `/kill-semantics/${id}` },
    };
    await guest.agent.createContainer({ container_id: id, oci_spec_json: Buffer.from(JSON.stringify(spec)), stdin: false, terminal: false });
    await guest.agent.startContainer(id);
  }

  async function stdout(id: string, execId = ''): Promise<string> {
    let text = '';
    for (;;) {
      const { data, eof } = await guest.agent.readStdout(id, execId, 65536);
      if (eof) return text;
      text += data.toString();
    }
  }

  /** Processes of the guest's PID namespace, as a container sharing it sees them. */
  async function guestProcesses(): Promise<string> {
    await start('ps', 'ps -o pid,args', SHARED_PID);
    const [out] = await Promise.all([stdout('ps'), guest.agent.waitProcess('ps', '')]);
    await guest.agent.removeContainer('ps');
    return out;
  }

  it('without a PID namespace of its own: what the init left is killed and its exit reported, with its status', async () => {
    await start('shared', 'sleep 600 & echo init-done; exit 7', SHARED_PID);
    const t0 = Date.now();
    const [status, out] = await Promise.all([guest.agent.waitProcess('shared', ''), stdout('shared')]);
    expect({ status, out }).toEqual({ status: 7, out: 'init-done\n' });
    // Unkilled, the leftover would keep crun waiting (and the exit unreported) for 600 s.
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(await guestProcesses()).not.toMatch(/sleep 600/);
    await guest.agent.removeContainer('shared');
  });

  it("kills the container's execs with it, as runc's shim does", async () => {
    await start('with-exec', 'sleep 3', SHARED_PID);
    const sleeper = { args: ['sleep', '600'], env: ['PATH=/bin'], cwd: '/', user: { uid: 0, gid: 0 }, terminal: false };
    await guest.agent.execProcess({ container_id: 'with-exec', exec_id: 'e1', process_json: Buffer.from(JSON.stringify(sleeper)), stdin: false, terminal: false });
    expect(await guest.agent.waitProcess('with-exec', '')).toBe(0);
    expect(await guest.agent.waitProcess('with-exec', 'e1')).toBe(137);
    await guest.agent.removeContainer('with-exec');
  });

  it('with a PID namespace of its own: the kernel ends what the init left', async () => {
    await start('own', 'sleep 600 & echo init-done', OWN_PID);
    const [status, out] = await Promise.all([guest.agent.waitProcess('own', ''), stdout('own')]);
    expect({ status, out }).toEqual({ status: 0, out: 'init-done\n' });
    expect(await guestProcesses()).not.toMatch(/sleep 600/);
    await guest.agent.removeContainer('own');
  });

  it('a signal after the exit answers NotFound (ttrpc code 5), not Unknown', async () => {
    await start('gone', 'true', SHARED_PID);
    expect(await guest.agent.waitProcess('gone', '')).toBe(0);
    for (const all of [false, true]) {
      const err = await guest.agent.signalProcess('gone', '', 15, all).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TtrpcError);
      expect((err as TtrpcError).code).toBe(NOT_FOUND);
    }
    await guest.agent.removeContainer('gone');
  });
});
