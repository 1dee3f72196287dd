// OCI hooks through real containerd: prestart/createRuntime at Create, poststart at
// Start, poststop at Delete, run on the host with the state JSON on stdin.
// ctr 1.6 sets no hooks by flag (`ctr run --config` takes no image, and `ctr containers
// create` takes no command), so each container is created from the image with
// `ctr containers create`, its spec replaced through containerd's Containers API
// (harness/container-spec.ts) with hooks and a command, and run with `ctr task start`,
// which creates the task, starts it, waits for its exit and deletes it.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { readContainerSpec, replaceContainerSpec } from '../harness/container-spec';
import { diffSnapshots, HostSnapshot, snapshotHost, waitForNoLeaks } from '../harness/leaks';
import { STATE_OCI_VERSION } from '../../sandbox/oci-hooks';
import { KataEnv, removeContainer, RUNTIME, startKataEnv } from './kata-env';

jest.setTimeout(300_000);

/**
 * `record-state <file> [message]`: keeps what an OCI hook was given: the state JSON from
 * stdin in <file>, its environment in <file>.env, and the command name of the pid the
 * state names (read while the hook runs) in <file>.comm. With a message, prints it on
 * stderr and fails with status 3.
 */
const RECORDER = `#!/bin/sh
out="$1"
cat > "$out.part"
env > "$out.env"
pid=$(sed -n 's/.*"pid":\\([0-9][0-9]*\\).*/\\1/p' "$out.part")
if [ -n "$pid" ]; then cat "/proc/$pid/comm" > "$out.comm"; fi
mv "$out.part" "$out"
if [ -n "$2" ]; then echo "$2" >&2; exit 3; fi
`;

const ANNOTATION = 'io.katats.test/hook-case';

describe('OCI hooks (ctr task start --runtime io.containerd.kata.v2)', () => {
  let env: KataEnv;
  let before: HostSnapshot;
  /** With containerd up but no container run: what "nothing left" compares against. */
  let baseline: HostSnapshot;
  let hookDir: string;
  let recorder: string;

  beforeAll(async () => {
    before = await snapshotHost();
    env = await startKataEnv();
    baseline = await snapshotHost({ dirs: [env.stateDir, env.containerd.state] });
    hookDir = fs.mkdtempSync(path.join(os.tmpdir(), 'katats-hooks-'));
    recorder = path.join(hookDir, 'record-state');
    fs.writeFileSync(recorder, RECORDER, { mode: 0o755 });
  });

  afterAll(async () => {
    await env?.stop();
    if (hookDir) fs.rmSync(hookDir, { recursive: true, force: true });
  });

  /** A hook entry that records into <hookDir>/<name>.json; with `failWith`, it then fails. */
  const hook = (name: string, failWith?: string) => ({
    path: recorder,
    args: ['record-state', path.join(hookDir, `${name}.json`), ...(failWith ? [failWith] : [])],
    env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin', `HOOK_NAME=${name}`],
    timeout: 30,
  });
  const recorded = (name: string): boolean => fs.existsSync(path.join(hookDir, `${name}.json`));
  const read = (file: string): string => fs.readFileSync(path.join(hookDir, file), 'utf8');
  const stateOf = (name: string): unknown => JSON.parse(read(`${name}.json`));
  const ctr = (args: string[]) => env.containerd.ctr(args);

  /**
   * Creates container `id` from the image with `hooks` and `args` in its spec; returns
   * its task's bundle path and the annotations its spec carries.
   */
  async function createWithHooks(id: string, hooks: object, args: string[]): Promise<{ bundle: string; annotations: Record<string, string> }> {
    const created = await env.containerd.ctr(['containers', 'create', '--runtime', RUNTIME, env.image, id]);
    expect(created).toMatchObject({ code: 0 });
    const api = { address: env.containerd.address, namespace: env.containerd.namespace };
    const spec = await readContainerSpec(api, id);
    const annotations = { ...(spec.annotations as Record<string, string> | undefined), [ANNOTATION]: id };
    await replaceContainerSpec(api, id, { ...spec, process: { ...(spec.process as object), args }, hooks, annotations });
    expect((await readContainerSpec(api, id)).hooks).toEqual(hooks);
    return { bundle: path.join(env.containerd.state, 'io.containerd.runtime.v2.task', env.containerd.namespace, id), annotations };
  }

  async function expectNothingLeft(): Promise<void> {
    const leaks = await waitForNoLeaks(baseline, 20_000);
    expect(leaks).toEqual([]);
    const left = fs.existsSync(env.stateDir) ? fs.readdirSync(env.stateDir, { withFileTypes: true }) : [];
    expect(left.filter((e) => e.isDirectory()).map((e) => e.name)).toEqual([]);
  }

  it('runs prestart and createRuntime at Create, poststart at Start and poststop at Delete, on the host, each given the state JSON', async () => {
    const id = 'hooks-1';
    try {
      const { bundle, annotations } = await createWithHooks(
        id,
        { prestart: [hook(`${id}-prestart`)], createRuntime: [hook(`${id}-createRuntime`)], poststart: [hook(`${id}-poststart`)], poststop: [hook(`${id}-poststop`)] },
        ['sh', '-c', 'echo in-vm'],
      );
      const pidFile = path.join(hookDir, `${id}.pid`);
      const result = await env.containerd.ctr(['task', 'start', '--pid-file', pidFile, id], { timeoutMs: 240_000 });
      expect({ code: result.code, stdout: result.stdout }).toEqual({ code: 0, stdout: 'in-vm\n' });
      // The pid a hook is told is the task's, as containerd knows it: the VMM's (as Kata passes the hypervisor's).
      const vmmPid = Number(fs.readFileSync(pidFile, 'utf8').trim());
      expect(vmmPid).toBeGreaterThan(0);
      const state = (status: string) => ({ ociVersion: STATE_OCI_VERSION, id, status, pid: vmmPid, bundle, annotations });
      expect(stateOf(`${id}-prestart`)).toEqual(state('creating'));
      expect(stateOf(`${id}-createRuntime`)).toEqual(state('creating'));
      expect(stateOf(`${id}-poststart`)).toEqual(state('running'));
      // `ctr task start` deletes the task after its exit: poststop ran before that Delete answered.
      expect(stateOf(`${id}-poststop`)).toEqual(state('stopped'));
      expect(read(`${id}-prestart.json.comm`).trim()).toMatch(/^qemu-system/);
      // Exactly the env the spec gave, not the shim's (containerd's env, and so the shim's, has $KATATS_CONFIG).
      const hookEnv = read(`${id}-prestart.json.env`).split('\n');
      expect(hookEnv).toEqual(expect.arrayContaining(['PATH=/usr/sbin:/usr/bin:/sbin:/bin', `HOOK_NAME=${id}-prestart`]));
      expect(hookEnv.filter((line) => line.startsWith('KATATS_CONFIG='))).toEqual([]);
    } finally {
      await removeContainer(ctr, id);
    }
    await expectNothingLeft();
  });

  it('a failing prestart hook fails the Create with its message; poststop still runs, and nothing is left', async () => {
    const id = 'hooks-2';
    try {
      const { bundle } = await createWithHooks(
        id,
        { prestart: [hook(`${id}-prestart`, 'no GPU for this container')], createRuntime: [hook(`${id}-createRuntime`)], poststart: [hook(`${id}-poststart`)], poststop: [hook(`${id}-poststop`)] },
        ['sh', '-c', 'echo never'],
      );
      const result = await env.containerd.ctr(['task', 'start', id], { timeoutMs: 240_000 });
      expect(result.code).not.toBe(0);
      expect(result.stdout).not.toContain('never');
      expect(result.stderr).toContain(`container ${id}: prestart hook ${recorder} failed with exit status 3: no GPU for this container`);
      expect(stateOf(`${id}-prestart`)).toMatchObject({ id, status: 'creating', bundle });
      expect(recorded(`${id}-createRuntime`)).toBe(false);
      expect(recorded(`${id}-poststart`)).toBe(false);
      // The runtime spec's lifecycle goes on: the container is destroyed, then poststop runs (steps 12-13).
      expect(stateOf(`${id}-poststop`)).toMatchObject({ id, status: 'stopped', bundle });
      expect((await ctr(['task', 'ls', '-q'])).stdout.split('\n')).not.toContain(id);
    } finally {
      await removeContainer(ctr, id);
    }
    await expectNothingLeft();
  });

  it('refuses a createContainer hook (it would have to run inside the VM) before any VM boots', async () => {
    const id = 'hooks-3';
    try {
      await createWithHooks(id, { createContainer: [hook(`${id}-createContainer`)] }, ['true']);
      const result = await env.containerd.ctr(['task', 'start', id], { timeoutMs: 120_000 });
      expect(result.code).not.toBe(0);
      expect(result.stderr).toContain(`container ${id}: spec hooks.createContainer cannot be honoured`);
      expect(recorded(`${id}-createContainer`)).toBe(false);
    } finally {
      await removeContainer(ctr, id);
    }
    await expectNothingLeft();
  });

  it('leaves no VM, shim, socket or mount once containerd is gone', async () => {
    await env.stop();
    expect(diffSnapshots(before, await snapshotHost())).toEqual([]);
    env = undefined as unknown as KataEnv;
  });
});
