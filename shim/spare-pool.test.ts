// The spare pool's protocol from the claiming side: keys, the pool directory, and
// claims against spares played by sockets in this test (spare.test.ts runs real ones).
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { ChildProcess, spawn } from 'child_process';
import { claimedSocketOf, claimOne, claimSpare, countSpares, daemonEnv, ensurePoolDir, isSpareOf, markStarting, parseClaim, poolDirs, poolSpares, readyRank, readySocketOf, sparePoolDir, sparePoolKey, startingMarkerOf, stopWaitingSpares } from './spare-pool';

const flags = { namespace: 'k8s.io', address: '/run/containerd/containerd.sock', publishBinary: '/usr/bin/containerd', debug: false };

describe('spare pool', () => {
  let tmp: string;
  let dir: string;
  const servers: net.Server[] = [];
  const processes: ChildProcess[] = [];
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-spares-'));
    dir = path.join(tmp, 'pool', 'key');
  });
  afterEach(async () => {
    for (const p of processes.splice(0)) p.kill('SIGKILL');
    await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** A spare as far as the protocol goes: answers `reply` to the claim line it records. */
  function fakeSpare(pid: number, reply: (line: string) => string | undefined): { lines: string[]; listening: Promise<void> } {
    const lines: string[] = [];
    const server = net.createServer((conn) => {
      let text = '';
      conn.setEncoding('utf8');
      conn.on('data', (chunk: string) => {
        text += chunk;
        if (!text.includes('\n')) return;
        const line = text.slice(0, text.indexOf('\n'));
        lines.push(line);
        const answer = reply(line);
        if (answer !== undefined) conn.end(answer);
      });
    });
    servers.push(server);
    return { lines, listening: new Promise((r) => server.listen(readySocketOf(dir, pid), () => r())) };
  }

  async function until(check: () => boolean): Promise<void> {
    for (let i = 0; i < 250 && !check(); i++) await new Promise((r) => setTimeout(r, 20));
    expect(check()).toBe(true);
  }

  /** A process whose command line names the pool, as a spare's does (`-spares-dir <dir>`): what counts as a live spare. */
  async function spareLikeProcess(): Promise<number> {
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1e9)', '--', '-spares-dir', dir], { stdio: 'ignore' });
    processes.push(child);
    await new Promise((r) => child.once('spawn', r));
    for (let i = 0; i < 100 && !isSpareOf(dir, child.pid!); i++) await new Promise((r) => setTimeout(r, 10));
    return child.pid!;
  }

  const claim = { id: 'pod-1', bundle: '/run/containerd/io.containerd.runtime.v2.task/k8s.io/pod-1', socket: '/run/containerd/s/0123456789abcdef', env: { PATH: '/usr/bin', UV_THREADPOOL_SIZE: '16' } };

  it('keys a pool by what a running daemon cannot change, and leaves the rest of the environment to the claim', () => {
    const entry = path.join(tmp, 'main.js');
    fs.writeFileSync(entry, '// shim');
    const env = { PATH: '/usr/bin', TTRPC_ADDRESS: '/run/containerd/containerd.sock.ttrpc' };
    const key = sparePoolKey(flags, env, entry);
    // start sizes libuv's pool at 16 when containerd does not: a daemon's 16 is the same daemon.
    expect(sparePoolKey(flags, { ...env, UV_THREADPOOL_SIZE: '16' }, entry)).toBe(key);
    // Likewise the allocator setting start gives a daemon, which the daemon then drops from its own environment.
    expect(sparePoolKey(flags, { ...env, MALLOC_MMAP_THRESHOLD_: '131072' }, entry)).toBe(key);
    expect(sparePoolKey(flags, { ...env, MALLOC_MMAP_THRESHOLD_: '65536' }, entry)).not.toBe(key);
    // Travels with the claim: containerd's NRI appends to its PATH after the first pod.
    expect(sparePoolKey(flags, { ...env, PATH: '/usr/bin:/opt/nri/bin', PWD: '/run/containerd/x', KATATS_CONFIG: '/etc/other.toml' }, entry)).toBe(key);
    expect(sparePoolKey({ ...flags, namespace: 'default' }, env, entry)).not.toBe(key);
    expect(sparePoolKey({ ...flags, debug: true }, env, entry)).not.toBe(key);
    // Act when Node starts: a spare started without them is not what start would launch.
    expect(sparePoolKey(flags, { ...env, NODE_OPTIONS: '--max-old-space-size=64' }, entry)).not.toBe(key);
    expect(sparePoolKey(flags, { ...env, UV_THREADPOOL_SIZE: '4' }, entry)).not.toBe(key);
    expect(sparePoolKey(flags, { ...env, LD_PRELOAD: '/lib/x.so' }, entry)).not.toBe(key);
    // An upgraded shim: spares running the old code are another pool.
    fs.writeFileSync(entry, '// shim, version 2');
    expect(sparePoolKey(flags, env, entry)).not.toBe(key);
  });

  it("gives a daemon start's environment with libuv's pool sized", () => {
    expect(daemonEnv({ PATH: '/bin', GONE: undefined })).toEqual({ PATH: '/bin', UV_THREADPOOL_SIZE: '16', MALLOC_MMAP_THRESHOLD_: '131072' });
    expect(daemonEnv({ UV_THREADPOOL_SIZE: '4', MALLOC_MMAP_THRESHOLD_: '65536' })).toEqual({ UV_THREADPOOL_SIZE: '4', MALLOC_MMAP_THRESHOLD_: '65536' });
  });

  it("lives in containerd's state dir, derived from the bundle", () => {
    expect(sparePoolDir('/run/containerd/io.containerd.runtime.v2.task/k8s.io/pod-1', 'abc')).toBe('/run/containerd/kata-ts-spares/abc');
  });

  it('makes the pool directory root-only and refuses one others can enter or a symlink', () => {
    ensurePoolDir(dir);
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    expect(fs.statSync(path.dirname(dir)).mode & 0o777).toBe(0o700);
    ensurePoolDir(dir); // again: fine
    fs.chmodSync(dir, 0o755);
    expect(() => ensurePoolDir(dir)).toThrow(/only its owner/);
    const elsewhere = path.join(tmp, 'elsewhere');
    fs.mkdirSync(elsewhere, { mode: 0o700 });
    const link = path.join(tmp, 'pool', 'link');
    fs.symlinkSync(elsewhere, link);
    expect(() => ensurePoolDir(link)).toThrow(/not a directory only its owner/);
  });

  it('hands the pod to a ready spare, which takes it through its renamed socket', async () => {
    ensurePoolDir(dir);
    const pid = await spareLikeProcess();
    const spare = fakeSpare(pid, () => 'ready\n');
    await spare.listening;
    const result = await claimSpare(dir, claim);
    expect(result).toEqual({ pid, failures: [] });
    expect(spare.lines.map((l) => JSON.parse(l))).toEqual([claim]);
    expect(fs.existsSync(readySocketOf(dir, pid))).toBe(false);
    expect(fs.existsSync(claimedSocketOf(dir, pid))).toBe(true);
  });

  it('gives one spare to exactly one of two claimers that both listed it', async () => {
    ensurePoolDir(dir);
    const pid = await spareLikeProcess();
    const spare = fakeSpare(pid, () => 'ready\n');
    await spare.listening;
    const results = await Promise.all([claimOne(dir, pid, claim, 5000), claimOne(dir, pid, { ...claim, id: 'pod-2' }, 5000)]);
    expect(results.sort()).toEqual(['lost', 'taken']);
    expect(spare.lines).toHaveLength(1);
  });

  it('skips what a dead spare left, and stops a refusing one, removing its files, and says why', async () => {
    ensurePoolDir(dir);
    fs.writeFileSync(readySocketOf(dir, 999_999_999), ''); // left by a spare that died
    const pid = await spareLikeProcess();
    await fakeSpare(pid, () => 'error: container id "x y" is not valid\n').listening;
    const result = await claimSpare(dir, claim);
    expect(result).toEqual({ failures: [`spare ${pid}: container id "x y" is not valid`] });
    expect(fs.readdirSync(dir)).toEqual([]);
    // Killed, not trusted to leave: it must never serve the pod beside the daemon the claimer launches.
    await until(() => processes.find((p) => p.pid === pid)!.signalCode === 'SIGKILL');
  });

  it('gives up on spares that do not answer, within one time budget for all', async () => {
    ensurePoolDir(dir);
    const pids = [await spareLikeProcess(), await spareLikeProcess()];
    for (const pid of pids) await fakeSpare(pid, () => undefined).listening;
    const started = Date.now();
    const result = await claimSpare(dir, claim, 300);
    expect(Date.now() - started).toBeLessThan(1500);
    expect(result.pid).toBeUndefined();
    expect(result.failures).toEqual([expect.stringMatching(new RegExp(`^spare (${pids.join('|')}): no answer within \\d+ ms$`))]);
  });

  it('claims nothing from a pool directory others could have written', async () => {
    ensurePoolDir(dir);
    const pid = await spareLikeProcess();
    await fakeSpare(pid, () => 'ready\n').listening;
    fs.chmodSync(dir, 0o755);
    const result = await claimSpare(dir, claim);
    expect(result.pid).toBeUndefined();
    expect(result.failures).toEqual([expect.stringMatching(/only its owner/)]);
    expect(fs.existsSync(readySocketOf(dir, pid))).toBe(true);
  });

  it('finds nothing to claim in a pool that does not exist', async () => {
    expect(await claimSpare(path.join(tmp, 'none'), claim)).toEqual({ failures: [] });
  });

  it('counts live spares, ready or starting, once each, and removes what dead ones left', async () => {
    ensurePoolDir(dir);
    const ready = await spareLikeProcess();
    await fakeSpare(ready, () => 'ready\n').listening;
    markStarting(dir, ready); // written after that spare was ready already: counted once
    markStarting(dir, await spareLikeProcess());
    markStarting(dir, process.pid); // alive, but not a spare of this pool (a reused pid)
    fs.writeFileSync(readySocketOf(dir, 999_999_999), ''); // its spare died
    fs.writeFileSync(claimedSocketOf(dir, 999_999_998), '');
    fs.writeFileSync(path.join(dir, 'notes.txt'), '');
    expect(countSpares(dir)).toBe(2);
    expect(fs.readdirSync(dir).sort()).toEqual([`${ready}.sock`, `${ready}.starting`, expect.stringMatching(/^\d+\.starting$/), 'notes.txt'].sort());
  });

  /** Its exit signal, once gone. */
  const ended = (pid: number) => {
    const child = processes.find((p) => p.pid === pid)!;
    return new Promise<string | null>((r) => (child.exitCode !== null || child.signalCode !== null ? r(child.signalCode) : child.once('exit', (_code, signal) => r(signal))));
  };

  it('lists live spares by state, reading only, and stops the waiting ones but not one a start took first', async () => {
    ensurePoolDir(dir);
    const [waiting, taken, starting] = [await spareLikeProcess(), await spareLikeProcess(), await spareLikeProcess()];
    await fakeSpare(waiting, () => undefined).listening;
    await fakeSpare(taken, () => undefined).listening;
    fs.renameSync(readySocketOf(dir, taken), claimedSocketOf(dir, taken)); // a pod's start won it
    markStarting(dir, starting);
    fs.writeFileSync(readySocketOf(dir, 999_999_999), ''); // its spare died
    expect(poolSpares(dir, false)).toEqual({ ready: [waiting], starting: [starting], beingClaimed: [taken] });
    expect(fs.existsSync(readySocketOf(dir, 999_999_999))).toBe(true); // status does not write
    const result = await stopWaitingSpares(dir, 300);
    expect(result).toEqual({ stopped: [waiting], left: [starting] });
    expect(await ended(waiting)).toBe('SIGKILL');
    expect(isSpareOf(dir, taken)).toBe(true); // becoming a pod's daemon: never touched
    // A dead spare's file is the pool users' to prune: destroy only removes what it stopped.
    expect(fs.readdirSync(dir).sort()).toEqual([`${taken}.claimed`, `${starting}.starting`, '999999999.sock'].sort());
  });

  it('waits for a starting spare to listen, then stops it', async () => {
    ensurePoolDir(dir);
    const late = await spareLikeProcess();
    markStarting(dir, late);
    setTimeout(() => void fakeSpare(late, () => undefined).listening.then(() => fs.rmSync(startingMarkerOf(dir, late))), 300);
    expect(await stopWaitingSpares(dir, 10_000)).toEqual({ stopped: [late], left: [] });
    expect(await ended(late)).toBe('SIGKILL');
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('refuses to stop anything in a pool directory others could have written', async () => {
    ensurePoolDir(dir);
    const pid = await spareLikeProcess();
    await fakeSpare(pid, () => undefined).listening;
    fs.chmodSync(dir, 0o755);
    await expect(stopWaitingSpares(dir)).rejects.toThrow(/only its owner/);
    expect(isSpareOf(dir, pid)).toBe(true);
  });

  it('knows a spare that names its pool by another path (a symlink on the way)', async () => {
    ensurePoolDir(dir);
    const link = path.join(tmp, 'link');
    fs.symlinkSync(path.join(tmp, 'pool'), link);
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1e9)', '--', '-spares-dir', path.join(link, 'key')], { stdio: 'ignore' });
    processes.push(child);
    await new Promise((r) => child.once('spawn', r));
    await until(() => isSpareOf(dir, child.pid!));
    expect(isSpareOf(path.join(tmp, 'pool', 'other'), child.pid!)).toBe(false);
  });

  it('finds the pools of a pools root by their key-shaped names', () => {
    const root = path.dirname(dir);
    for (const name of ['0123456789abcdef0123456789abcdef', 'ffffffffffffffffffffffffffffffff', 'not-a-key', '0123']) fs.mkdirSync(path.join(root, name), { recursive: true });
    expect(poolDirs(root)).toEqual([path.join(root, '0123456789abcdef0123456789abcdef'), path.join(root, 'ffffffffffffffffffffffffffffffff')]);
    expect(poolDirs(path.join(tmp, 'none'))).toEqual([]);
  });

  it('ranks live ready spares by name, so surplus ones know they are', async () => {
    ensurePoolDir(dir);
    const [a, b] = [await spareLikeProcess(), await spareLikeProcess()];
    await fakeSpare(a, () => undefined).listening;
    await fakeSpare(b, () => undefined).listening;
    fs.writeFileSync(readySocketOf(dir, 1), ''); // sorts first, but no spare of ours
    const [low, high] = [a, b].sort((x, y) => (`${x}.sock` < `${y}.sock` ? -1 : 1)); // names, not numbers
    expect(readyRank(dir, low)).toBe(0);
    expect(readyRank(dir, high)).toBe(1);
    expect(readyRank(dir, 300)).toBe(-1);
  });

  it('accepts only a well-formed claim', () => {
    expect(parseClaim(JSON.stringify(claim))).toEqual(claim);
    expect(() => parseClaim(JSON.stringify({ ...claim, env: undefined }))).toThrow(/env must be an object/);
    expect(() => parseClaim(JSON.stringify({ ...claim, env: { 'A=B': 'x' } }))).toThrow(/not a variable/);
    expect(() => parseClaim(JSON.stringify({ ...claim, env: { A: 1 } }))).toThrow(/not a variable/);
    expect(() => parseClaim(JSON.stringify({ ...claim, env: { A: 'x\0y' } }))).toThrow(/not a variable/);
    expect(() => parseClaim('{')).toThrow(/not JSON/);
    expect(() => parseClaim('null')).toThrow(/must be strings/);
    expect(() => parseClaim(JSON.stringify({ ...claim, id: '../etc' }))).toThrow(/not valid/);
    expect(() => parseClaim(JSON.stringify({ ...claim, bundle: 'relative/bundle' }))).toThrow(/normalised absolute/);
    expect(() => parseClaim(JSON.stringify({ ...claim, bundle: '/run/../etc' }))).toThrow(/normalised absolute/);
    expect(() => parseClaim(JSON.stringify({ ...claim, socket: `/${'s'.repeat(120)}` }))).toThrow(/at most 107 bytes/);
  });
});
