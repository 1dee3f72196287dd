// OCI hooks with real child processes: small shell scripts in a temporary directory.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { FailedPreconditionError, HookFailedError, InvalidArgumentError } from '../lib/errors';
import { silentLogger } from '../lib/logger';
import { ContainerHooks, HookRunContext, HookState, parseHostHooks, resolveOutside, runHook } from './oci-hooks';
import type { OciSpec } from './spec';

describe('OCI hooks', () => {
  let dir: string;
  let bundle: string;
  /** Stands for what the guest can write (a container rootfs). */
  let guestDir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-hooks-'));
    bundle = path.join(dir, 'bundle');
    guestDir = path.join(bundle, 'rootfs');
    fs.mkdirSync(guestDir, { recursive: true });
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** An executable shell script in the test directory. */
  const script = (name: string, body: string): string => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
    return file;
  };
  const ctx = (): HookRunContext => ({ containerId: 'c1', guestWritable: [guestDir], cwd: bundle, logger: silentLogger() });
  const state: HookState = { ociVersion: '1.0.2', id: 'c1', status: 'creating', pid: 4242, bundle: '/b', annotations: { k: 'v' } };
  const read = (name: string): string => fs.readFileSync(path.join(dir, name), 'utf8');
  const failure = (p: Promise<unknown>): Promise<HookFailedError> =>
    p.then(
      () => {
        throw new Error('the hook was expected to fail');
      },
      (err: unknown) => {
        expect(err).toBeInstanceOf(HookFailedError);
        return err as HookFailedError;
      },
    );

  describe('parseHostHooks', () => {
    it('takes the four host kinds, each entry as written; no hooks is no hooks', () => {
      const hooks = parseHostHooks(
        {
          prestart: [{ path: '/usr/bin/a', args: ['a', '-x'], env: ['K=v=w'], timeout: 5 }],
          createRuntime: [{ path: '/usr/bin/b' }],
          poststop: [{ path: '/usr/bin/c' }],
          createContainer: [],
          somethingNewer: [{ path: 'relative is fine for what we do not run' }],
        },
        'c1',
        [guestDir],
      );
      expect(hooks).toEqual({
        prestart: [{ path: '/usr/bin/a', args: ['a', '-x'], env: ['K=v=w'], timeout: 5 }],
        createRuntime: [{ path: '/usr/bin/b' }],
        poststart: [],
        poststop: [{ path: '/usr/bin/c' }],
      });
      expect(parseHostHooks(undefined, 'c1', [])).toEqual({ prestart: [], createRuntime: [], poststart: [], poststop: [] });
    });

    it.each([
      ['not an object', ['x'], 'container c1: spec hooks must be an object'],
      ['a kind that is not an array', { prestart: { path: '/x' } }, 'container c1: spec hooks.prestart must be an array'],
      ['an entry that is not an object', { poststop: ['/x'] }, 'container c1: spec hooks.poststop[0] must be an object'],
      ['a relative path', { prestart: [{ path: 'bin/hook' }] }, 'container c1: spec hooks.prestart[0].path must be an absolute path (got "bin/hook")'],
      ['no path', { prestart: [{ args: ['x'] }] }, 'hooks.prestart[0].path must be an absolute path (got undefined)'],
      ['args that are not strings', { poststart: [{ path: '/x', args: ['x', 1] }] }, 'hooks.poststart[0].args must be an array of strings'],
      ['an env entry without =', { createRuntime: [{ path: '/x', env: ['PATH'] }] }, 'hooks.createRuntime[0].env must be an array of NAME=value strings'],
      ['a NUL byte', { createRuntime: [{ path: '/x', args: ['a\0b'] }] }, 'hooks.createRuntime[0].args must be an array of strings without NUL bytes'],
      ['a zero timeout', { prestart: [{ path: '/x', timeout: 0 }] }, 'hooks.prestart[0].timeout must be a whole number of seconds greater than zero (got 0)'],
      ['a negative timeout', { prestart: [{ path: '/x', timeout: -1 }] }, '(got -1)'],
      ['a fractional timeout', { prestart: [{ path: '/x', timeout: 1.5 }] }, '(got 1.5)'],
      ['a timeout as a string', { prestart: [{ path: '/x', timeout: '5' }] }, '(got "5")'],
    ])('refuses %s with InvalidArgument naming the field', (_what, hooks, message) => {
      expect(() => parseHostHooks(hooks, 'c1', [])).toThrow(InvalidArgumentError);
      expect(() => parseHostHooks(hooks, 'c1', [])).toThrow(message);
    });

    it('refuses a hook inside what the guest can write', () => {
      const hooks = { poststop: [{ path: path.join(guestDir, 'bin', '..', 'bin', 'cleanup') }] };
      expect(() => parseHostHooks(hooks, 'c1', [guestDir])).toThrow(InvalidArgumentError);
      expect(() => parseHostHooks(hooks, 'c1', [guestDir])).toThrow(`lies inside ${guestDir}, which the guest can write`);
      // A sibling whose name merely starts the same is not inside.
      expect(parseHostHooks({ poststop: [{ path: `${guestDir}-tools/cleanup` }] }, 'c1', [guestDir]).poststop).toHaveLength(1);
    });

    it.each(['createContainer', 'startContainer'])('refuses %s hooks with FailedPrecondition: they would run inside the VM', (kind) => {
      const hooks = { [kind]: [{ path: '/usr/bin/nvidia-ctk', args: ['nvidia-ctk', 'hook', 'update-ldcache'] }] };
      expect(() => parseHostHooks(hooks, 'c1', [])).toThrow(FailedPreconditionError);
      expect(() => parseHostHooks(hooks, 'c1', [])).toThrow(`container c1: spec hooks.${kind} cannot be honoured`);
    });
  });

  describe('runHook', () => {
    it('gives the hook the state JSON on stdin, exactly its own env, its argv0 and the bundle as working directory', async () => {
      process.env.KATATS_HOOK_TEST_SECRET = 'daemon-only';
      try {
        const hook = script('record.sh', `cat > "${dir}/stdin.json"; env > "${dir}/env.txt"; pwd > "${dir}/cwd.txt"; echo "$@" > "${dir}/args.txt"`);
        await runHook('prestart', { path: hook, args: ['record', 'one', 'two'], env: ['HOOK_VAR=a=b', 'OTHER=x'] }, state, ctx());
        expect(JSON.parse(read('stdin.json'))).toEqual(state);
        const env = read('env.txt').split('\n');
        expect(env).toEqual(expect.arrayContaining(['HOOK_VAR=a=b', 'OTHER=x']));
        expect(env.filter((line) => line.startsWith('KATATS_HOOK_TEST_SECRET') || line.startsWith('HOME='))).toEqual([]);
        expect(read('cwd.txt').trim()).toBe(bundle);
        expect(read('args.txt').trim()).toBe('one two');
      } finally {
        delete process.env.KATATS_HOOK_TEST_SECRET;
      }
      // argv[0] is args[0], not the path (a script's $0 is its file, so ask the shell itself).
      await runHook('poststart', { path: '/bin/sh', args: ['named-argv0', '-c', `printf %s "$0" > "${dir}/argv0.txt"`] }, state, ctx());
      expect(read('argv0.txt')).toBe('named-argv0');
    });

    it('runs a hook without args as its path alone, and with no env at all', async () => {
      const hook = script('bare.sh', `echo "$0 $#" > "${dir}/bare.txt"; env | grep -v '^PWD=' | grep -v '^SHLVL=' | grep -v '^_=' > "${dir}/bare-env.txt"; true`);
      await runHook('poststop', { path: hook }, state, ctx());
      expect(read('bare.txt').trim()).toBe(`${hook} 0`);
      expect(read('bare-env.txt')).toBe('');
    });

    it('a hook that does not read its stdin still succeeds', async () => {
      await runHook('prestart', { path: script('ignore.sh', 'exit 0') }, { ...state, annotations: { big: 'x'.repeat(1 << 20) } }, ctx());
    });

    it('fails naming the container, kind, path, exit status and the end of stderr', async () => {
      const hook = script('fail.sh', `cat >/dev/null; head -c 5000 /dev/zero | tr '\\0' x >&2; echo ' the reason' >&2; exit 3`);
      const err = await failure(runHook('createRuntime', { path: hook }, state, ctx()));
      expect(err.hook).toEqual({ kind: 'createRuntime', path: hook });
      expect(err.exitStatus).toBe(3);
      expect(err.grpcCode).toBe(9); // FAILED_PRECONDITION
      expect(err.message).toMatch(new RegExp(`^container c1: createRuntime hook ${hook} failed with exit status 3: …x+ the reason$`));
      expect(err.message.length).toBeLessThan(1200);
    });

    it('kills a hook at its timeout (SIGKILL: it ignores SIGTERM) and says so', async () => {
      const hook = script('hang.sh', `echo $$ > "${dir}/pid"; trap '' TERM; exec sleep 30`);
      const started = Date.now();
      const err = await failure(runHook('prestart', { path: hook, timeout: 1 }, state, ctx()));
      expect(Date.now() - started).toBeLessThan(5000);
      expect(err.exitStatus).toBe('timeout');
      expect(err.message).toBe(`container c1: prestart hook ${hook} did not finish within 1 s and was killed`);
      const pid = Number(read('pid').trim());
      for (let i = 0; i < 100 && fs.existsSync(`/proc/${pid}`); i++) await new Promise((r) => setTimeout(r, 20));
      expect(fs.existsSync(`/proc/${pid}`)).toBe(false);
    });

    it('says when a hook cannot be run at all', async () => {
      const missing = path.join(dir, 'no-such-hook');
      const err = await failure(runHook('poststop', { path: missing }, state, ctx()));
      expect(err.message).toMatch(new RegExp(`^container c1: poststop hook ${missing} was not run: ENOENT`));
      const notExecutable = path.join(dir, 'plain.txt');
      fs.writeFileSync(notExecutable, 'data', { mode: 0o644 });
      const denied = await failure(runHook('poststop', { path: notExecutable }, state, ctx()));
      expect(denied.message).toBe(`container c1: poststop hook ${notExecutable} could not be run (EACCES)`);
    });

    it('does not run a hook whose path leads, through a link, into what the guest can write', async () => {
      const marker = path.join(dir, 'ran');
      const guestHook = path.join(guestDir, 'evil.sh');
      fs.writeFileSync(guestHook, `#!/bin/sh\ntouch ${marker}\n`, { mode: 0o755 });
      fs.symlinkSync(guestHook, path.join(dir, 'innocent.sh'));
      const err = await failure(runHook('poststop', { path: path.join(dir, 'innocent.sh') }, state, ctx()));
      expect(err.message).toBe(`container c1: poststop hook ${path.join(dir, 'innocent.sh')} was not run: it resolves into ${guestDir}, which the guest can write`);
      // A link inside the guest's tree that points back out is refused too: the guest could swap it.
      fs.symlinkSync(path.join(dir, 'innocent.sh'), path.join(guestDir, 'out'));
      fs.symlinkSync(path.join(guestDir, 'out'), path.join(dir, 'via-guest'));
      await failure(runHook('poststop', { path: path.join(dir, 'via-guest') }, state, ctx()));
      expect(fs.existsSync(marker)).toBe(false);
    });
  });

  describe('resolveOutside', () => {
    it('resolves links, relative and absolute, and .. like exec would', () => {
      const real = script('real.sh', 'true');
      fs.mkdirSync(path.join(dir, 'sub'));
      fs.symlinkSync('../real.sh', path.join(dir, 'sub', 'rel'));
      fs.symlinkSync(path.join(dir, 'sub'), path.join(dir, 'abs'));
      expect(resolveOutside(path.join(dir, 'abs', 'rel'), [guestDir])).toBe(fs.realpathSync(real));
      expect(resolveOutside(path.join(dir, 'sub', '..', 'real.sh'), [guestDir])).toBe(fs.realpathSync(real));
    });

    it('gives up on a link loop', () => {
      fs.symlinkSync(path.join(dir, 'b'), path.join(dir, 'a'));
      fs.symlinkSync(path.join(dir, 'a'), path.join(dir, 'b'));
      expect(() => resolveOutside(path.join(dir, 'a'), [])).toThrow('too many levels of symbolic links');
    });
  });

  describe('ContainerHooks', () => {
    const specWith = (hooks: unknown, extra: Partial<OciSpec> = {}): OciSpec => ({ ociVersion: '1.0.2', hooks, annotations: { 'io.example/a': '1' }, ...extra });
    const hooksOf = async (spec: OciSpec): Promise<ContainerHooks> => (await ContainerHooks.fromSpec(spec, { id: 'c1', bundle, guestWritable: [guestDir] }, silentLogger()))!;
    /** A hook appending "<name> <stdin>" to the log. */
    const logging = (name: string, exit = 0) => ({ path: script(`${name}.sh`, `echo "${name} $(cat)" >> "${dir}/log"; exit ${exit}`) });
    const log = (): Array<[string, HookState]> =>
      read('log')
        .trim()
        .split('\n')
        .map((line) => {
          const space = line.indexOf(' ');
          return [line.slice(0, space), JSON.parse(line.slice(space + 1)) as HookState];
        });

    it('is undefined for a spec without host hooks', async () => {
      expect(await ContainerHooks.fromSpec(specWith(undefined), { id: 'c1', bundle, guestWritable: [] }, silentLogger())).toBeUndefined();
      expect(await ContainerHooks.fromSpec(specWith({ prestart: [], poststop: [] }), { id: 'c1', bundle, guestWritable: [] }, silentLogger())).toBeUndefined();
    });

    it('created runs prestart then createRuntime with status "creating" and the VMM pid; the first failure stops the rest', async () => {
      const hooks = await hooksOf(specWith({ createRuntime: [logging('runtime1')], prestart: [logging('pre1'), logging('pre2')] }));
      await hooks.created(4242);
      expect(log().map(([name]) => name)).toEqual(['pre1', 'pre2', 'runtime1']);
      expect(log()[0][1]).toEqual({ ociVersion: '1.0.2', id: 'c1', status: 'creating', pid: 4242, bundle, annotations: { 'io.example/a': '1' } });
      fs.rmSync(path.join(dir, 'log'));
      const failing = await hooksOf(specWith({ prestart: [logging('first'), logging('broken', 7), logging('never')], createRuntime: [logging('neither')] }));
      const err = await failure(failing.created(4242));
      expect(err.exitStatus).toBe(7);
      expect(log().map(([name]) => name)).toEqual(['first', 'broken']);
    });

    it('started and deleted only warn: every hook runs; poststop without a VM has no pid', async () => {
      const hooks = await hooksOf(specWith({ poststart: [logging('start1', 1), logging('start2')], poststop: [logging('stop1', 2), logging('stop2')] }));
      await hooks.started(4242);
      await hooks.deleted(0);
      await hooks.deleted(0); // a second Delete runs none again
      expect(log().map(([name, s]) => [name, s.status, s.pid])).toEqual([
        ['start1', 'running', 4242],
        ['start2', 'running', 4242],
        ['stop1', 'stopped', undefined],
        ['stop2', 'stopped', undefined],
      ]);
    });

    it("counts the container's read-write volumes as guest-writable, not its read-only ones", async () => {
      const volume = path.join(dir, 'volume');
      const mounts = [{ destination: '/data', type: 'bind', source: volume, options: ['rbind', 'rw'] }];
      await expect(hooksOf(specWith({ prestart: [{ path: `${volume}/hook` }] }, { mounts }))).rejects.toThrow(`lies inside ${volume}, which the guest can write`);
      const readonly = [{ destination: '/data', type: 'bind', source: volume, options: ['rbind', 'ro'] }];
      expect(await hooksOf(specWith({ prestart: [{ path: `${volume}/hook` }] }, { mounts: readonly }))).toBeDefined();
    });

    it('knows a guest-writable root also by the path a link on the way leads to', async () => {
      const real = path.join(dir, 'real-volume');
      fs.mkdirSync(real);
      fs.symlinkSync(real, path.join(dir, 'volume-link'));
      const mounts = [{ destination: '/data', type: 'bind', source: path.join(dir, 'volume-link'), options: ['rbind', 'rw'] }];
      const hook = script('outside.sh', 'true');
      // The hook is outside every root, but a link inside the real volume dir points at it: still outside, runs.
      const hooks = await hooksOf(specWith({ poststart: [{ path: hook }] }, { mounts }));
      // A link planted outside that leads into the volume through its real path is refused.
      fs.writeFileSync(path.join(real, 'evil.sh'), '#!/bin/sh\ntrue\n', { mode: 0o755 });
      fs.symlinkSync(path.join(real, 'evil.sh'), path.join(dir, 'to-evil'));
      expect(() => resolveOutside(path.join(dir, 'to-evil'), (hooks as unknown as { guestWritable: string[] }).guestWritable)).toThrow(`it resolves into ${real}`);
    });
  });
});
