// The management socket as a shim daemon serves it: a sandbox booted on a fake VMM
// whose "guest" is our fake agent, the daemon's metrics and management server as its
// observer, and reads over the socket as kata-ts-monitor makes them.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { defaultConfig } from '../config/runtime-config';
import { silentLogger } from '../lib/logger';
import { readSandboxIdentity, SANDBOX_IDENTITY_FILE, SHIM_MONITOR_SOCKET } from '../lib/shim-monitor';
import { unixHttpGet } from '../lib/unix-http-get';
import { parsePrometheusText } from '../lib/prom-text';
import { parseExposition, samplesOf, valueOf } from '../tests/harness/prometheus';
import { CallContext } from '../ttrpc';
import type { GuestMetricsReport } from '../sandbox/agent-client';
import { HostKsm } from '../sandbox/ksm';
import { Sandbox } from '../sandbox/sandbox';
import { ObservedSandbox, SandboxObserver } from '../sandbox/sandbox-observer';
import { fakeAgent, FakeAgent } from '../sandbox/testing/fake-agent';
import { fakeDriver } from '../sandbox/testing/fake-driver';
import { ManagementServer } from './management-server';
import { boundedEntries, MAX_MEMINFO_ENTRIES, ShimMetrics } from './shim-metrics';

const asRoot = process.getuid?.() === 0 ? it : it.skip;
const MiB = 1024 * 1024;
const get = (socket: string, urlPath: string) => unixHttpGet(socket, urlPath, { timeoutMs: 5000, maxBytes: 4 * MiB });

/** A guest whose report is partly a lie: values past any bound and unknown fields must not reach the host's series. */
const GUEST_REPORT = {
  meminfo_bytes: { MemTotal: 512 * MiB, MemAvailable: 400 * MiB, MemFree: 2 ** 60, 'Evil{x="y"}': 1 },
  load1: Infinity,
  load5: 0.25,
  load15: 0.5,
  tasks_running: 1,
  tasks_total: 42,
  agent_rss_bytes: 30 * MiB,
  agent_cpu_seconds: 1.5,
};

function agentForSandbox(guestMetrics: (req: unknown, ctx: CallContext) => unknown): FakeAgent {
  return fakeAgent({
    CreateSandbox: () => ({}),
    DestroySandbox: () => ({}),
    GetOOMEvent: (_req: unknown, ctx: CallContext) => new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(new Error('abandoned')))),
    GetGuestMetrics: guestMetrics,
  });
}

describe('the management socket', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mgmt-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** A sandbox observed the way the daemon observes its own (shim/daemon.ts serveManagement). */
  async function startObserved(agent: FakeAgent, guestTimeoutMs = 2000): Promise<{ sandbox: Sandbox; metrics: ShimMetrics; management: ManagementServer }> {
    const config = defaultConfig();
    config.runtime.stateDir = dir;
    const metrics = new ShimMetrics({ logger: silentLogger(), guestTimeoutMs });
    const management = new ManagementServer({ metrics, namespace: 'k8s.io', cri: { name: 'web', namespace: 'shop', uid: 'u-1' }, logger: silentLogger() });
    const observer: SandboxObserver = {
      sandboxStarted: (s) => management.start(s),
      sandboxStopping: () => management.stop(),
      agentCall: metrics.agentCall,
      hotplug: (device, op, failed) => metrics.hotplug(device, op, failed),
    };
    const driver = fakeDriver('virtio-serial', agent);
    driver.pid = () => process.pid; // this process stands in for QEMU: /proc has something to read
    const sandbox = await Sandbox.start({ id: 'pod1', namespace: 'k8s.io', hostname: 'h', config, hypervisor: driver, events: { onProcessExit: () => undefined, onOom: () => undefined }, logger: silentLogger(), hostKsm: new HostKsm(path.join(dir, 'no-ksm')), observer });
    return { sandbox, metrics, management };
  }

  asRoot('serves the sandbox metrics and agent URL on a root-only socket in the work dir, and removes it with the sandbox', async () => {
    const agent = agentForSandbox(() => GUEST_REPORT);
    const { sandbox, metrics } = await startObserved(agent);
    const workDir = path.join(dir, 'k8s.io', 'pod1');
    const socket = path.join(workDir, SHIM_MONITOR_SOCKET);
    try {
      const st = fs.statSync(socket);
      expect({ socket: st.isSocket(), mode: st.mode & 0o777, uid: st.uid }).toEqual({ socket: true, mode: 0o600, uid: 0 });
      expect(readSandboxIdentity(workDir)).toEqual({ id: 'pod1', namespace: 'k8s.io', cri: { name: 'web', namespace: 'shop', uid: 'u-1' } });
      metrics.published('/tasks/create');
      metrics.hotplug('memory', 'add', false);

      const text = await get(socket, '/metrics');
      const families = parseExposition(text);
      // Each family once, in the order the registry declares them.
      const typed = [...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]).filter((name) => !/^kata_shim_(process|nodejs)_/.test(name));
      expect(typed).toEqual([
        'kata_hypervisor_boot_duration_seconds',
        ...['kata_hypervisor', 'kata_shim'].flatMap((prefix) => ['rss_bytes', 'pss_bytes', 'cpu_seconds_total', 'threads', 'fds'].map((name) => `${prefix}_${name}`)),
        'kata_guest_meminfo_bytes',
        'kata_guest_load',
        'kata_guest_tasks',
        'kata_agent_rss_bytes',
        'kata_agent_cpu_seconds_total',
        'kata_shim_guest_metrics_failures_total',
        'kata_agent_call_duration_seconds',
        'kata_agent_call_failures_total',
        'kata_shim_events_published_total',
        'kata_shim_events_dropped_total',
        'kata_hypervisor_hotplugs_total',
        'kata_hypervisor_hotplug_failures_total',
      ]);
      expect(valueOf(families, 'kata_hypervisor_boot_duration_seconds')).toBeGreaterThan(0);
      for (const prefix of ['kata_hypervisor', 'kata_shim']) {
        for (const name of ['rss_bytes', 'pss_bytes', 'cpu_seconds_total', 'threads', 'fds']) expect({ name: `${prefix}_${name}`, value: valueOf(families, `${prefix}_${name}`) }).toEqual({ name: `${prefix}_${name}`, value: expect.any(Number) });
        expect(valueOf(families, `${prefix}_rss_bytes`)).toBeGreaterThan(MiB);
        expect(valueOf(families, `${prefix}_pss_bytes`)).toBeGreaterThan(0);
      }
      // Only known fields within bounds: MemFree (1 EiB) and the made-up field are dropped, load1 (Infinity) too.
      expect(samplesOf(families, 'kata_guest_meminfo_bytes').map((s) => [s.labels?.item, Number(s.value)])).toEqual([
        ['mem_total', 512 * MiB],
        ['mem_available', 400 * MiB],
      ]);
      expect(samplesOf(families, 'kata_guest_load').map((s) => [s.labels?.item, Number(s.value)])).toEqual([
        ['load5', 0.25],
        ['load15', 0.5],
      ]);
      expect(valueOf(families, 'kata_guest_tasks', { item: 'total' })).toBe(42);
      expect(valueOf(families, 'kata_agent_rss_bytes')).toBe(30 * MiB);
      expect(valueOf(families, 'kata_agent_cpu_seconds_total')).toBe(1.5);
      expect(valueOf(families, 'kata_shim_events_published_total', { topic: '/tasks/create' })).toBe(1);
      expect(valueOf(families, 'kata_shim_events_dropped_total', { reason: 'queue_full' })).toBe(0);
      expect(valueOf(families, 'kata_hypervisor_hotplugs_total', { device: 'memory', op: 'add' })).toBe(1);
      // Agent calls by method: CreateSandbox at boot, GetGuestMetrics for this scrape (histograms: read with our parser).
      const calls = parsePrometheusText(text).find((f) => f.name === 'kata_agent_call_duration_seconds')!;
      const counts = calls.samples.filter((s) => s.name.endsWith('_count')).map((s) => [Object.fromEntries(s.labels).method, Number(s.value)]);
      expect(counts).toEqual(expect.arrayContaining([['CreateSandbox', 1], ['GetGuestMetrics', 1]]));

      expect(await get(socket, '/agent-url')).toBe(`unix://${path.join(workDir, 'agent.sock')}`);
      await expect(get(socket, '/nope')).rejects.toThrow(/HTTP 404: no such endpoint \/nope/);
    } finally {
      await sandbox.destroy();
      await agent.server.close();
    }
    expect(fs.existsSync(socket)).toBe(false);
    expect(fs.existsSync(path.join(workDir, SANDBOX_IDENTITY_FILE))).toBe(false);
    expect(fs.existsSync(workDir)).toBe(false);
  });

  asRoot('answers in time without the guest series when the guest does not answer', async () => {
    const agent = agentForSandbox((_req, ctx) => new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(new Error('abandoned')))));
    const { sandbox } = await startObserved(agent, 200);
    try {
      const socket = path.join(dir, 'k8s.io', 'pod1', SHIM_MONITOR_SOCKET);
      const started = Date.now();
      const families = parseExposition(await get(socket, '/metrics'));
      expect(Date.now() - started).toBeLessThan(3000);
      expect(samplesOf(families, 'kata_guest_meminfo_bytes')).toEqual([]);
      expect(valueOf(families, 'kata_shim_guest_metrics_failures_total')).toBe(1);
      expect(valueOf(families, 'kata_agent_call_failures_total', { method: 'GetGuestMetrics' })).toBe(1);
      expect(valueOf(families, 'kata_hypervisor_rss_bytes')).toBeGreaterThan(0);
    } finally {
      await sandbox.destroy();
      await agent.server.close();
    }
  });
});

describe('shim metrics rendering', () => {
  /** A sandbox whose guest answers `report` after `delayMs`, counting the asks. */
  function observed(report: object, delayMs = 0): ObservedSandbox & { asks: number } {
    const sandbox = {
      id: 'pod1',
      workDir: '/nonexistent',
      bootSeconds: 1,
      asks: 0,
      hypervisorPid: () => process.pid,
      agentUrl: () => 'unix:///nonexistent/agent.sock',
      guestMetrics: () => {
        sandbox.asks++;
        // Not decoded: like a hostile guest's answer, it need not have every field.
        return new Promise<GuestMetricsReport>((resolve) => setTimeout(() => resolve(report as GuestMetricsReport), delayMs));
      },
    };
    return sandbox;
  }

  it('shares one render among concurrent scrapes and answers the cached text within the interval', async () => {
    let now = 0;
    const metrics = new ShimMetrics({ logger: silentLogger(), now: () => now });
    const sandbox = observed(GUEST_REPORT, 50);
    const [a, b, c] = await Promise.all([metrics.render(sandbox), metrics.render(sandbox), metrics.render(sandbox)]);
    expect(sandbox.asks).toBe(1);
    expect(b).toBe(a);
    expect(c).toBe(a);
    now = 999;
    metrics.published('/tasks/start');
    expect(await metrics.render(sandbox)).toBe(a); // cached: the guest is not asked again
    expect(sandbox.asks).toBe(1);
    now = 1000;
    const fresh = await metrics.render(sandbox);
    expect(sandbox.asks).toBe(2);
    expect(valueOf(parseExposition(fresh), 'kata_shim_events_published_total', { topic: '/tasks/start' })).toBe(1);
    expect(valueOf(parseExposition(fresh), 'kata_guest_meminfo_bytes', { item: 'mem_total' })).toBe(512 * MiB);
    // Another sandbox (or none) is not answered from this one's text.
    await metrics.render(undefined);
    expect(sandbox.asks).toBe(2);
  });

  it("takes a bounded number of entries from the guest's meminfo map", async () => {
    const huge: Record<string, number> = {};
    for (let i = 0; i < 10 * MAX_MEMINFO_ENTRIES; i++) huge[`Junk${i}`] = i;
    huge.MemTotal = 512 * MiB; // past the cap: not looked at
    expect(boundedEntries(huge, MAX_MEMINFO_ENTRIES)).toMatchObject({ truncated: true });
    expect(boundedEntries(huge, MAX_MEMINFO_ENTRIES).entries.size).toBe(MAX_MEMINFO_ENTRIES);
    expect(boundedEntries({ MemTotal: 1 }, MAX_MEMINFO_ENTRIES)).toEqual({ entries: new Map([['MemTotal', 1]]), truncated: false });
    const metrics = new ShimMetrics({ logger: silentLogger() });
    const families = parseExposition(await metrics.render(observed({ ...GUEST_REPORT, meminfo_bytes: huge })));
    expect(samplesOf(families, 'kata_guest_meminfo_bytes')).toEqual([]);
    expect(valueOf(families, 'kata_guest_tasks', { item: 'total' })).toBe(42);
  });

  it("adds Node's runtime series after the shim's own when asked, in one exposition", async () => {
    const withRuntime = new ShimMetrics({ logger: silentLogger(), runtimeMetrics: true, minRenderIntervalMs: 0 });
    withRuntime.agentCall('CreateSandbox', 0.2, false);
    const text = await withRuntime.render(observed(GUEST_REPORT));
    const families = parseExposition(text); // fails on a family written twice
    expect(valueOf(families, 'kata_shim_process_cpu_seconds_total')).toBeGreaterThan(0);
    expect(samplesOf(families, 'kata_shim_nodejs_eventloop_lag_seconds')).toHaveLength(1);
    const names = parsePrometheusText(text).map((f) => f.name);
    expect(names.indexOf('kata_agent_call_duration_seconds')).toBeLessThan(names.indexOf('kata_shim_process_cpu_seconds_total'));
    // The runtime registry is made once: a second render has the same families.
    expect(parsePrometheusText(await withRuntime.render(observed(GUEST_REPORT))).map((f) => f.name)).toEqual(names);

    const without = new ShimMetrics({ logger: silentLogger() });
    const own = parsePrometheusText(await without.render(observed(GUEST_REPORT))).map((f) => f.name);
    expect(own.filter((name) => name.startsWith('kata_shim_process_') || name.startsWith('kata_shim_nodejs_'))).toEqual([]);
    expect(own).toEqual(names.filter((name) => own.includes(name)));
  });
});
