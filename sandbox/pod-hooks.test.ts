// Where the pod runs OCI hooks in a container's lifecycle, with a fake driver (pid
// 4242) and agent (no VM), and real hook scripts writing what they were given.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { defaultConfig } from '../config/runtime-config';
import { GrpcCode, HookFailedError } from '../lib/errors';
import { silentLogger } from '../lib/logger';
import { HookState } from './oci-hooks';
import { Pod } from './pod';
import { fakeAgent, FakeAgent } from './testing/fake-agent';
import { fakeDriver } from './testing/fake-driver';
import { CallContext } from '../ttrpc';

describe('Pod with OCI hooks', () => {
  let dir: string;
  let agent: FakeAgent;
  let pod: Pod;
  let driver: ReturnType<typeof fakeDriver>;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-pod-hooks-'));
    const noOutput = async () => ({ data: Buffer.alloc(0), eof: true });
    const untilAbandoned = (_req: unknown, ctx: CallContext) => new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(new Error('abandoned'))));
    agent = fakeAgent({
      CreateSandbox: () => ({}), DestroySandbox: () => ({}), CreateContainer: () => ({}), RemoveContainer: () => ({}),
      StartContainer: () => ({ pid: 7 }), WaitProcess: () => ({ status: 0 }),
      ReadStdout: noOutput, ReadStderr: noOutput, GetOOMEvent: untilAbandoned,
    });
    driver = fakeDriver('virtio-serial', agent);
    const config = defaultConfig();
    config.runtime.stateDir = path.join(dir, 'state');
    pod = new Pod({ namespace: 'default', resolveConfig: () => ({ config, files: [], via: 'test' }), newHypervisor: () => driver }, { onExit: () => undefined, onOom: () => undefined }, silentLogger());
  });
  afterEach(async () => {
    await pod.destroy();
    await agent.server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** A hook that writes the state it got to <dir>/<name>.json, then exits with `exit`. */
  const recorder = (name: string, exit = 0) => {
    const file = path.join(dir, `${name}.sh`);
    fs.writeFileSync(file, `#!/bin/sh\ncat > "${dir}/${name}.json"\necho "${name} says no" >&2\nexit ${exit}\n`, { mode: 0o755 });
    return { path: file };
  };
  const stateOf = (name: string): HookState => JSON.parse(fs.readFileSync(path.join(dir, `${name}.json`), 'utf8')) as HookState;
  const ran = (name: string): boolean => fs.existsSync(path.join(dir, `${name}.json`));
  const writeBundle = (hooks: unknown): string => {
    const bundle = path.join(dir, 'bundle');
    fs.mkdirSync(path.join(bundle, 'rootfs'), { recursive: true });
    fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify({ ociVersion: '1.0.2', root: { path: 'rootfs' }, process: { args: ['sh'], cwd: '/' }, hooks }));
    return bundle;
  };
  const create = (bundle: string) => pod.create({ id: 'c1', bundle, rootfs: [], terminal: false, stdin: '', stdout: '', stderr: '' });

  it('runs prestart and createRuntime at Create, poststart at Start, poststop at Delete, each with its state; the guest never sees them', async () => {
    const bundle = writeBundle({ prestart: [recorder('prestart')], createRuntime: [recorder('createRuntime')], poststart: [recorder('poststart', 1)], poststop: [recorder('poststop')] });
    await create(bundle);
    const created = { ociVersion: '1.0.2', id: 'c1', status: 'creating', pid: 4242, bundle };
    expect(stateOf('prestart')).toEqual(created);
    expect(stateOf('createRuntime')).toEqual(created);
    const guestSpec = JSON.parse((agent.requests.get('CreateContainer') as { oci_spec_json: Buffer }).oci_spec_json.toString()) as Record<string, unknown>;
    expect(guestSpec.hooks).toBeUndefined();
    expect(ran('poststart')).toBe(false);

    // A failing poststart is a warning: the Start succeeds.
    await pod.start('c1', '');
    expect(stateOf('poststart')).toEqual({ ...created, status: 'running' });
    await pod.process('c1', '').wait();
    expect(ran('poststop')).toBe(false);
    await pod.delete('c1', '');
    expect(stateOf('poststop')).toEqual({ ...created, status: 'stopped' });
  });

  it('a failing prestart hook fails the Create, removes the container everywhere, runs poststop, and leaves createRuntime unrun', async () => {
    const bundle = writeBundle({ prestart: [recorder('prestart', 3)], createRuntime: [recorder('createRuntime')], poststop: [recorder('poststop')] });
    const err = (await create(bundle).catch((e: unknown) => e)) as HookFailedError;
    expect(err).toBeInstanceOf(HookFailedError);
    expect(err.grpcCode).toBe(GrpcCode.FAILED_PRECONDITION);
    expect(err.message).toBe(`container c1: prestart hook ${path.join(dir, 'prestart.sh')} failed with exit status 3: prestart says no`);
    expect(ran('createRuntime')).toBe(false);
    expect(stateOf('poststop').status).toBe('stopped');
    expect(agent.calls).toContain('RemoveContainer');
    expect(() => pod.container('c1')).toThrow('container c1 not found');
    expect(pod.isEmpty).toBe(true);
    // Its share is gone; the sandbox's directory itself stays until the pod is destroyed.
    const shared = fs.readdirSync(path.join(dir, 'state', 'default', 'c1', 'mounts'));
    expect(shared).toEqual([]);
  });

  it('refuses a createContainer hook before any VM boots', async () => {
    const bundle = writeBundle({ createContainer: [recorder('createContainer')] });
    await expect(create(bundle)).rejects.toMatchObject({ grpcCode: GrpcCode.FAILED_PRECONDITION, message: expect.stringContaining('spec hooks.createContainer cannot be honoured') });
    expect(driver.booted).toBeUndefined();
    expect(ran('createContainer')).toBe(false);
  });

  it('refuses a malformed hook with InvalidArgument before any VM boots', async () => {
    const bundle = writeBundle({ poststop: [{ path: 'relative/hook', timeout: 5 }] });
    await expect(create(bundle)).rejects.toMatchObject({ grpcCode: GrpcCode.INVALID_ARGUMENT, message: 'container c1: spec hooks.poststop[0].path must be an absolute path (got "relative/hook")' });
    expect(driver.booted).toBeUndefined();
  });
});
