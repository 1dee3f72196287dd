// Real spare daemons (the built shim, dist/shim/main.js) against a fake containerd
// socket: what they take, what they ignore, and when they leave. The e2e suite
// (tests/e2e/spare-shims.test.ts) runs them under a real containerd.
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { lookupService, TASK_SERVICE } from '../lib/protos';
import { TtrpcClient } from '../ttrpc';
import { claimSpare, claimedSocketOf, readySocketOf, stopWaitingSpares } from './spare-pool';

const MAIN = path.resolve(__dirname, '..', 'dist', 'shim', 'main.js');

async function until(what: string, check: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('spare shim daemons', () => {
  let tmp: string;
  let pool: string;
  let containerd: net.Server;
  let containerdSocket: string;
  const children: ChildProcess[] = [];

  beforeAll(() => {
    if (!fs.existsSync(MAIN)) throw new Error(`${MAIN} missing: run 'make build' first (spares run the built shim)`);
  });
  beforeEach(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-spare-'));
    env.TTRPC_ADDRESS = path.join(tmp, 'containerd.sock.ttrpc');
    pool = path.join(tmp, 'pool');
    fs.mkdirSync(pool, { mode: 0o700 });
    // Only listens: an unclaimed spare checks that containerd is there, nothing more.
    containerdSocket = path.join(tmp, 'containerd.sock.ttrpc');
    containerd = net.createServer((c) => c.destroy());
    await new Promise<void>((r) => containerd.listen(containerdSocket, r));
  });
  afterEach(async () => {
    for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await new Promise((r) => containerd.close(r));
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  function startSpare(wanted = 1, extraEnv: Record<string, string> = {}): ChildProcess {
    const child = spawn(process.execPath, [MAIN, '-namespace', 'kt-test', '-address', path.join(tmp, 'containerd.sock'), '-publish-binary', '/bin/true', '-spares-dir', pool, '-spares', String(wanted), '-nice', '0', 'spare'], {
      stdio: 'ignore',
      env: { ...process.env, TTRPC_ADDRESS: containerdSocket, KATATS_SPARE_CHECK_MS: '100', ...extraEnv },
    });
    children.push(child);
    return child;
  }

  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', TTRPC_ADDRESS: '' };
  /** Its exit code (null when a signal ended it). */
  const exited = (child: ChildProcess) => new Promise<number | null>((r) => (child.exitCode !== null || child.signalCode !== null ? r(child.exitCode) : child.once('exit', (code) => r(code))));

  async function readySpare(wanted = 1): Promise<ChildProcess> {
    const child = startSpare(wanted);
    await until('the spare to listen', () => fs.existsSync(readySocketOf(pool, child.pid!)));
    return child;
  }

  it('becomes the pod daemon it is handed, in the pod bundle, on the pod socket', async () => {
    const spare = await readySpare();
    const bundle = path.join(tmp, 'bundle');
    fs.mkdirSync(bundle);
    const socket = path.join(tmp, 'pod.sock');
    const { pid, failures } = await claimSpare(pool, { id: 'pod-1', bundle, socket, env });
    expect(failures).toEqual([]);
    expect(pid).toBe(spare.pid);
    // It serves the Task API there as the pod's shim, and its pool files are gone.
    const client = await TtrpcClient.connect(socket);
    try {
      expect((await client.call(lookupService(TASK_SERVICE), 'Connect', { id: 'pod-1' }, { timeoutMs: 5000 })).shim_pid).toBe(spare.pid);
    } finally {
      client.close();
    }
    expect(fs.readlinkSync(`/proc/${spare.pid}/cwd`)).toBe(bundle);
    expect(fs.readdirSync(pool)).toEqual([]);
    spare.kill('SIGTERM');
    expect(await exited(spare)).toBe(0);
    expect(fs.existsSync(socket)).toBe(false);
  });

  it('ignores a connection that did not claim it first', async () => {
    const spare = await readySpare();
    await new Promise<void>((resolve) => {
      const probe = net.createConnection(readySocketOf(pool, spare.pid!), () => probe.end(`${JSON.stringify({ id: 'sneaky', bundle: tmp, socket: path.join(tmp, 's.sock'), env })}\n`));
      probe.on('close', () => resolve()); // the spare drops it (a reset, as often as not)
      probe.on('error', () => undefined);
    });
    await new Promise((r) => setTimeout(r, 300));
    expect(alive(spare.pid!)).toBe(true);
    expect(fs.existsSync(path.join(tmp, 's.sock'))).toBe(false);
    expect((await claimSpare(pool, { id: 'pod-2', bundle: tmp, socket: path.join(tmp, 'pod2.sock'), env })).pid).toBe(spare.pid);
    spare.kill('SIGTERM');
    await exited(spare);
  });

  it('refuses a bad claim, says why, and leaves', async () => {
    const spare = await readySpare();
    const { pid, failures } = await claimSpare(pool, { id: '../escape', bundle: tmp, socket: path.join(tmp, 'x.sock'), env });
    expect(pid).toBeUndefined();
    expect(failures).toEqual([expect.stringMatching(/container id "..\/escape" is not valid/)]);
    await exited(spare); // by itself, or killed by the claimer that got no "ready"
    expect(alive(spare.pid!)).toBe(false);
    expect(fs.existsSync(path.join(tmp, 'x.sock'))).toBe(false);
  });

  it('leaves when it cannot become the pod daemon (its bundle is gone), without taking the pod socket', async () => {
    const spare = await readySpare();
    // A bundle that does not exist: the claim is well-formed, but the spare cannot become the daemon.
    const socket = path.join(tmp, 'pod.sock');
    const { pid, failures } = await claimSpare(pool, { id: 'pod-3', bundle: path.join(tmp, 'gone'), socket, env });
    expect(pid).toBeUndefined();
    expect(failures).toHaveLength(1);
    expect(await exited(spare)).not.toBe(0);
    expect(fs.existsSync(socket)).toBe(false);
  });

  it("runs with the claimer's environment, not the one it was launched with", async () => {
    const spare = await readySpare();
    const bundle = path.join(tmp, 'bundle');
    fs.mkdirSync(bundle);
    // A daemon that gets no Create exits after KATATS_IDLE_EXIT_MS (60 s unless set): the claim's value must be the one in force.
    const started = Date.now();
    expect((await claimSpare(pool, { id: 'pod-4', bundle, socket: path.join(tmp, 'pod4.sock'), env: { ...env, KATATS_IDLE_EXIT_MS: '300' } })).pid).toBe(spare.pid);
    expect(await exited(spare)).toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('drops what its launch environment had and the claim does not', async () => {
    // Launched with a 300 ms idle exit; the claim's environment has none, so the daemon waits the default 60 s for a Create.
    const spare = startSpare(1, { KATATS_IDLE_EXIT_MS: '300' });
    await until('the spare to listen', () => fs.existsSync(readySocketOf(pool, spare.pid!)));
    const bundle = path.join(tmp, 'bundle');
    fs.mkdirSync(bundle);
    expect((await claimSpare(pool, { id: 'pod-6', bundle, socket: path.join(tmp, 'pod6.sock'), env })).pid).toBe(spare.pid);
    await new Promise((r) => setTimeout(r, 2000));
    expect(alive(spare.pid!)).toBe(true);
    spare.kill('SIGTERM');
    expect(await exited(spare)).toBe(0);
  });

  it('refuses a claim under way when it is stopped', async () => {
    const spare = await readySpare();
    const claimed = claimedSocketOf(pool, spare.pid!);
    fs.renameSync(readySocketOf(pool, spare.pid!), claimed);
    const answer = await new Promise<string>((resolve, reject) => {
      let text = '';
      const conn = net.createConnection(claimed, () => {
        spare.kill('SIGTERM');
        setTimeout(() => conn.write(`${JSON.stringify({ id: 'pod-7', bundle: tmp, socket: path.join(tmp, 'pod7.sock'), env })}\n`), 300);
      });
      conn.setEncoding('utf8');
      conn.on('data', (chunk: string) => (text += chunk));
      conn.on('close', () => resolve(text));
      conn.on('error', reject);
    });
    expect(answer).toBe('error: the spare is stopping (SIGTERM)\n');
    expect(await exited(spare)).toBe(1);
    expect(fs.existsSync(path.join(tmp, 'pod7.sock'))).toBe(false);
  });

  it('is killed, and its files removed, when it does not answer a claim in time', async () => {
    const spare = await readySpare();
    process.kill(spare.pid!, 'SIGSTOP'); // as a spare starved of CPU would be
    const socket = path.join(tmp, 'pod5.sock');
    const { pid, failures } = await claimSpare(pool, { id: 'pod-5', bundle: tmp, socket, env }, 500);
    expect(pid).toBeUndefined();
    expect(failures).toEqual([expect.stringMatching(/no answer within/)]);
    expect(await exited(spare)).toBeNull(); // SIGKILLed: it can never serve the pod's socket beside the daemon start launches
    expect(spare.signalCode).toBe('SIGKILL');
    expect(fs.existsSync(claimedSocketOf(pool, spare.pid!))).toBe(false);
    expect(fs.existsSync(socket)).toBe(false);
  });

  it('leaves no socket behind when stopped while waiting', async () => {
    const spare = await readySpare();
    spare.kill('SIGTERM');
    expect(await exited(spare)).toBe(0);
    expect(fs.readdirSync(pool)).toEqual([]);
  });

  it('is stopped by factory destroy (stopWaitingSpares), leaving nothing in the pool', async () => {
    const spare = await readySpare();
    expect(await stopWaitingSpares(pool)).toEqual({ stopped: [spare.pid], left: [] });
    expect(await exited(spare)).toBeNull();
    expect(spare.signalCode).toBe('SIGKILL');
    expect(fs.readdirSync(pool)).toEqual([]);
  });

  it('keeps only as many spares as wanted', async () => {
    const first = await readySpare(1);
    const second = await readySpare(1);
    const [low, high] = first.pid! < second.pid! ? [first, second] : [second, first];
    // Ranked by name: the one sorting last is the surplus (string order of the pids).
    const surplus = `${low.pid}.sock` < `${high.pid}.sock` ? high : low;
    expect(await exited(surplus)).toBe(0);
    const kept = surplus === high ? low : high;
    expect(alive(kept.pid!)).toBe(true);
    expect(fs.readdirSync(pool)).toEqual([`${kept.pid}.sock`]);
  });

  it('retires once containerd stops answering', async () => {
    const spare = await readySpare();
    await new Promise((r) => containerd.close(r));
    expect(await exited(spare)).toBe(0);
    expect(fs.readdirSync(pool)).toEqual([]);
    containerd = net.createServer(); // afterEach closes it
  });
});
