// The monitor against fake shims: HTTP servers on management sockets in a temporary
// state dir, each with the identity record a shim writes. One answers slowly, never
// within the deadline; one answers garbage. Scrapes are made over TCP, as Prometheus makes them.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';
import { Counter, Registry } from 'prom-client';
import { silentLogger } from '../lib/logger';
import { monitorSocketPath, readSandboxIdentity, SANDBOX_IDENTITY_FILE, SandboxIdentity, writeSandboxIdentity } from '../lib/shim-monitor';
import { parseExposition, samplesOf, valueOf } from '../tests/harness/prometheus';
import { KataMonitor } from './kata-monitor';
import { parseMonitorFlags } from './main';
import { parseListenAddress, serveMonitor } from './monitor-server';

interface FakeShim {
  workDir: string;
  server: http.Server;
}

/** What a shim of `id` answers: a counter whose value tells the shims apart, and an agent URL. */
async function shimMetrics(value: number): Promise<string> {
  const registry = new Registry();
  new Counter({ name: 'kata_shim_events_published_total', help: 'Events.', labelNames: ['topic'], registers: [registry] }).inc({ topic: '/tasks/start' }, value);
  return registry.metrics();
}

async function fakeShim(workDir: string, identity: SandboxIdentity, answer: (url: string) => Promise<string> | undefined): Promise<FakeShim> {
  fs.mkdirSync(workDir, { recursive: true });
  writeSandboxIdentity(workDir, identity);
  const server = http.createServer((req, res) => {
    const body = answer(req.url ?? '');
    if (body) void body.then((text) => res.end(text));
    // else: never answers (a hung shim)
  });
  await new Promise<void>((r) => server.listen(monitorSocketPath(workDir), r));
  return { workDir, server };
}

function httpGet(port: number, urlPath: string, headers: http.OutgoingHttpHeaders = {}): Promise<{ status: number; body: string; encoding?: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: urlPath, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const raw = Buffer.concat(chunks);
          const encoding = res.headers['content-encoding'];
          resolve({ status: res.statusCode ?? 0, body: (encoding === 'gzip' ? zlib.gunzipSync(raw) : raw).toString('utf8'), encoding });
        });
      })
      .on('error', reject);
  });
}

const identity = (id: string, name: string, namespace = 'k8s.io'): SandboxIdentity => ({ id, namespace, cri: { name, namespace: 'shop', uid: `uid-${name}` } });

describe('kata-ts-monitor', () => {
  let stateDir: string;
  let shims: FakeShim[];
  let monitorServer: http.Server;
  let port: number;

  beforeEach(async () => {
    stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mon-'));
    shims = [
      await fakeShim(path.join(stateDir, 'k8s.io', 'aaa'), identity('aaa', 'pod-a'), (url) => (url === '/metrics' ? shimMetrics(1) : url === '/agent-url' ? Promise.resolve('unix:///a/agent.sock') : undefined)),
      // An id too long for a socket path: the work dir is hashed, the record says whose it is.
      await fakeShim(path.join(stateDir, '.hashed', '0123abcd'), identity('bbb', 'pod-b'), (url) => (url === '/metrics' ? shimMetrics(2) : undefined)),
      await fakeShim(path.join(stateDir, 'k8s.io', 'hung'), identity('hung', 'pod-h'), () => undefined),
      await fakeShim(path.join(stateDir, 'k8s.io', 'garbage'), identity('garbage', 'pod-g'), () => Promise.resolve('this is { not prometheus\n')),
    ];
    // A dir without a socket (a sandbox still booting) and a stray file are not sandboxes.
    fs.mkdirSync(path.join(stateDir, 'k8s.io', 'booting'));
    fs.writeFileSync(path.join(stateDir, 'k8s.io', 'stray'), '');
    const monitor = new KataMonitor({ stateDirs: [stateDir], scrapeTimeoutMs: 300, logger: silentLogger() });
    ({ server: monitorServer, address: { port } } = await serveMonitor(monitor, parseListenAddress('127.0.0.1:0'), silentLogger()));
  });

  afterEach(async () => {
    monitorServer.closeAllConnections();
    await new Promise((r) => monitorServer.close(r));
    for (const s of shims) {
      s.server.closeAllConnections();
      await new Promise((r) => s.server.close(r));
    }
    fs.rmSync(stateDir, { recursive: true, force: true });
  });

  it('labels each shim series with its sandbox and CRI names, within the deadline despite a hung shim', async () => {
    const started = Date.now();
    const { status, body, encoding } = await httpGet(port, '/metrics', { 'Accept-Encoding': 'gzip' });
    expect(Date.now() - started).toBeLessThan(2000);
    expect({ status, encoding }).toEqual({ status: 200, encoding: 'gzip' });
    const families = parseExposition(body);
    expect(samplesOf(families, 'kata_shim_events_published_total').map((s) => [s.labels, Number(s.value)])).toEqual(
      expect.arrayContaining([
        [{ sandbox_id: 'aaa', containerd_namespace: 'k8s.io', cri_uid: 'uid-pod-a', cri_name: 'pod-a', cri_namespace: 'shop', topic: '/tasks/start' }, 1],
        [{ sandbox_id: 'bbb', containerd_namespace: 'k8s.io', cri_uid: 'uid-pod-b', cri_name: 'pod-b', cri_namespace: 'shop', topic: '/tasks/start' }, 2],
      ]),
    );
    expect(samplesOf(families, 'kata_shim_events_published_total')).toHaveLength(2);
    expect(valueOf(families, 'kata_monitor_running_shim_count')).toBe(4);
    expect(valueOf(families, 'kata_monitor_scrape_failures_total')).toBe(2); // the hung one and the garbage one
    expect(valueOf(families, 'kata_monitor_scrapes_total')).toBe(1);
  });

  it("drops a sandbox's series once its socket is gone", async () => {
    const [a] = shims;
    await new Promise((r) => a.server.close(r));
    fs.rmSync(a.workDir, { recursive: true, force: true });
    const families = parseExposition((await httpGet(port, '/metrics')).body);
    expect(samplesOf(families, 'kata_shim_events_published_total').map((s) => s.labels?.sandbox_id)).toEqual(['bbb']);
    expect(valueOf(families, 'kata_monitor_running_shim_count')).toBe(3);
  });

  it('serves the sandbox list, one sandbox raw, and its agent URL; unknown ones are 404', async () => {
    expect((await httpGet(port, '/sandboxes')).body.split('\n').filter(Boolean).sort()).toEqual(['aaa', 'bbb', 'garbage', 'hung']);
    expect((await httpGet(port, '/metrics?sandbox=bbb')).body).toBe(await shimMetrics(2));
    expect(await httpGet(port, '/agent-url?sandbox=aaa')).toMatchObject({ status: 200, body: 'unix:///a/agent.sock\n' });
    expect(await httpGet(port, '/agent-url?sandbox=zzz')).toMatchObject({ status: 404, body: expect.stringContaining('sandbox zzz not found') });
    expect((await httpGet(port, '/nope')).status).toBe(404);
  });

  it('tells apart one id in two containerd namespaces: a containerd_namespace label, and &namespace= on the per-sandbox endpoints', async () => {
    shims.push(await fakeShim(path.join(stateDir, 'moby', 'aaa'), identity('aaa', 'pod-a2', 'moby'), (url) => (url === '/metrics' ? shimMetrics(7) : url === '/agent-url' ? Promise.resolve('unix:///moby/agent.sock') : undefined)));
    const families = parseExposition((await httpGet(port, '/metrics')).body);
    const aaa = samplesOf(families, 'kata_shim_events_published_total', { sandbox_id: 'aaa' });
    expect(aaa.map((s) => [s.labels?.containerd_namespace, Number(s.value)]).sort()).toEqual([['k8s.io', 1], ['moby', 7]]);
    // Every re-exported series carries the namespace; the monitor's own do not.
    for (const family of families.filter((f) => !f.name.startsWith('kata_monitor_'))) for (const m of family.metrics) expect(m.labels?.containerd_namespace).toBeDefined();

    for (const endpoint of ['/metrics', '/agent-url']) {
      expect(await httpGet(port, `${endpoint}?sandbox=aaa`)).toMatchObject({ status: 409, body: 'sandbox aaa exists in namespaces k8s.io, moby; name one with &namespace=\n' });
    }
    expect((await httpGet(port, '/metrics?sandbox=aaa&namespace=moby')).body).toBe(await shimMetrics(7));
    expect((await httpGet(port, '/metrics?sandbox=aaa&namespace=k8s.io')).body).toBe(await shimMetrics(1));
    expect(await httpGet(port, '/agent-url?sandbox=aaa&namespace=moby')).toMatchObject({ status: 200, body: 'unix:///moby/agent.sock\n' });
    expect(await httpGet(port, '/agent-url?sandbox=aaa&namespace=default')).toMatchObject({ status: 404, body: expect.stringContaining('sandbox aaa in namespace default not found') });
    // An unambiguous id needs no namespace, and a wrong one is not found.
    expect((await httpGet(port, '/metrics?sandbox=bbb')).status).toBe(200);
    expect((await httpGet(port, '/metrics?sandbox=bbb&namespace=moby')).status).toBe(404);
  });

  it('shares one collection among concurrent scrapes', async () => {
    let asked = 0;
    shims.push(
      await fakeShim(path.join(stateDir, 'k8s.io', 'slow'), identity('slow', 'pod-s'), (url) => {
        if (url !== '/metrics') return undefined;
        asked++;
        return new Promise((r) => setTimeout(r, 100)).then(() => shimMetrics(3));
      }),
    );
    const answers = await Promise.all([1, 2, 3, 4].map(() => httpGet(port, '/metrics')));
    expect(asked).toBe(1);
    expect(new Set(answers.map((a) => a.body)).size).toBe(1);
    expect(valueOf(parseExposition(answers[0].body), 'kata_monitor_scrapes_total')).toBe(1);
    await httpGet(port, '/metrics'); // after it: a new collection
    expect(asked).toBe(2);
  });

  it('skips a work dir whose identity record is a FIFO, a symlink or too large, without blocking', async () => {
    const fifoDir = path.join(stateDir, 'k8s.io', 'fifo');
    const fifo = await fakeShim(fifoDir, identity('fifo', 'pod-f'), () => shimMetrics(4));
    shims.push(fifo);
    fs.rmSync(path.join(fifoDir, SANDBOX_IDENTITY_FILE));
    execFileSync('mkfifo', [path.join(fifoDir, SANDBOX_IDENTITY_FILE)]);
    const linkDir = path.join(stateDir, 'k8s.io', 'link');
    shims.push(await fakeShim(linkDir, identity('link', 'pod-l'), () => shimMetrics(5)));
    fs.renameSync(path.join(linkDir, SANDBOX_IDENTITY_FILE), path.join(linkDir, 'real.json'));
    fs.symlinkSync('real.json', path.join(linkDir, SANDBOX_IDENTITY_FILE));
    const bigDir = path.join(stateDir, 'k8s.io', 'big');
    shims.push(await fakeShim(bigDir, identity('big', 'pod-b'), () => shimMetrics(6)));
    fs.writeFileSync(path.join(bigDir, SANDBOX_IDENTITY_FILE), JSON.stringify({ ...identity('big', 'pod-b'), pad: 'x'.repeat(64 * 1024) }));

    expect(() => readSandboxIdentity(fifoDir)).toThrow('not a regular file');
    expect(() => readSandboxIdentity(linkDir)).toThrow(/ELOOP/);
    expect(() => readSandboxIdentity(bigDir)).toThrow('larger than');
    const started = Date.now();
    expect((await httpGet(port, '/sandboxes')).body.split('\n').filter(Boolean).sort()).toEqual(['aaa', 'bbb', 'garbage', 'hung']);
    expect(Date.now() - started).toBeLessThan(2000);
  });
});

describe('kata-ts-monitor flags', () => {
  it("defaults as Kata's kata-monitor does, and reads every flag", () => {
    expect(parseMonitorFlags([])).toEqual({ listenAddress: '127.0.0.1:8090', stateDirs: [], scrapeTimeoutMs: 3000, logLevel: 'info' });
    expect(parseMonitorFlags(['--listen-address', '[::1]:9000', '--state-dir=/run/a', '--state-dir', '/run/b', '--scrape-timeout', '0.5', '--log-level', 'debug'])).toEqual({
      listenAddress: '[::1]:9000',
      stateDirs: ['/run/a', '/run/b'],
      scrapeTimeoutMs: 500,
      logLevel: 'debug',
    });
    expect(() => parseMonitorFlags(['--bogus'])).toThrow('unknown argument "--bogus"');
    expect(() => parseMonitorFlags(['--scrape-timeout', '0'])).toThrow('positive number of seconds');
  });

  it('reads listen addresses', () => {
    expect(parseListenAddress('[::1]:9000')).toEqual({ host: '::1', port: 9000 });
    expect(parseListenAddress(':8090')).toEqual({ host: '0.0.0.0', port: 8090 });
    expect(() => parseListenAddress('localhost')).toThrow('is not HOST:PORT');
  });
});
