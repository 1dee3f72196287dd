// Metrics of running pods, as an operator reads them: each pod's shim serves Kata's
// management endpoints on a root-only socket in the sandbox's work dir
// (`curl --unix-socket <work dir>/shim-monitor.sock http://x/metrics`), and
// kata-ts-monitor on 127.0.0.1 serves every pod's series labelled with its sandbox and
// CRI names, forgetting a pod once it is removed. Output is checked with a Prometheus
// text parser that is not ours (tests/harness/prometheus.ts) and, for histograms, ours.
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as http from 'http';
import * as path from 'path';
import { removeCgroupTreeOnceEmpty } from '../harness/cgroups';
import { CriContainerd, KATA_HANDLER } from '../harness/containerd';
import { CriClient, PodSandboxConfig } from '../harness/cri';
import { CriImages } from '../harness/cri-images';
import { containerConfig, podSandboxConfig } from '../harness/cri-pod';
import { run } from '../harness/exec';
import { HostSnapshot, waitForNoLeaks } from '../harness/leaks';
import { parseExposition, ParsedFamily, samplesOf, valueOf } from '../harness/prometheus';
import { REPO } from '../harness/repo';
import { wakeupsOver } from '../harness/wakeups';
import { parsePrometheusText } from '../../lib/prom-text';
import { CriKataEnv, RUNTIME_CLI, sandboxWorkDir, startCriKataEnv } from './kata-env';

jest.setTimeout(900_000);
const MiB = 1024 * 1024;
const MONITOR = path.join(REPO, 'dist', 'monitor', 'main.js');

/** Every series the issue asks of a running pod's shim, with a value above 0. */
const NONZERO = [
  'kata_hypervisor_boot_duration_seconds',
  'kata_hypervisor_rss_bytes',
  'kata_hypervisor_pss_bytes',
  'kata_hypervisor_cpu_seconds_total',
  'kata_hypervisor_threads',
  'kata_shim_rss_bytes',
  'kata_shim_pss_bytes',
  'kata_shim_cpu_seconds_total',
  'kata_agent_rss_bytes',
];

interface Pod {
  id: string;
  config: PodSandboxConfig;
  uid: string;
}

interface Monitor {
  process: ChildProcess;
  port: number;
  stderr(): string;
}

function httpGet(port: number, urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, timeout: 60_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${urlPath}: no answer within 60 s`)));
    req.on('error', reject);
  });
}

/** kata-ts-monitor on 127.0.0.1, a port of its choosing, watching `stateDir`; resolves once it listens. */
function startMonitor(stateDir: string): Promise<Monitor> {
  if (!fs.existsSync(MONITOR)) throw new Error(`${MONITOR} missing: run 'make build' first`);
  // TCG guests on a busy 2-core machine answer slowly; the default 3 s is for KVM.
  const child = spawn(process.execPath, [MONITOR, '--listen-address', '127.0.0.1:0', '--state-dir', stateDir, '--scrape-timeout', '20'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`kata-ts-monitor did not listen within 30 s: ${stderr}`)), 30_000);
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      stderr += chunk;
      // Complete lines only: pino writes one JSON object per line.
      for (const line of stderr.split('\n').slice(0, -1)) {
        if (!line.includes('kata-ts-monitor listening')) continue;
        clearTimeout(timer);
        resolve({ process: child, port: (JSON.parse(line) as { port: number }).port, stderr: () => stderr });
        return;
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`kata-ts-monitor exited with ${code}: ${stderr}`));
    });
  });
}

async function stopMonitor(monitor: Monitor | undefined): Promise<number | null> {
  if (!monitor || monitor.process.exitCode !== null || monitor.process.signalCode !== null) return monitor?.process.exitCode ?? null;
  const exited = new Promise<number | null>((r) => monitor.process.once('exit', (code) => r(code)));
  monitor.process.kill('SIGTERM');
  return exited;
}

/** Retries `read` until `ready` holds of what it answers (the guest may be slow to answer a first scrape). */
async function eventually<T>(read: () => Promise<T>, ready: (value: T) => boolean, attempts = 10): Promise<T> {
  let value = await read();
  for (let i = 1; i < attempts && !ready(value); i++) {
    await new Promise((r) => setTimeout(r, 2000));
    value = await read();
  }
  return value;
}

/** The _count of histogram `name`'s series whose labels include `labels` (our parser: the other folds labelled histograms). */
function histogramCount(text: string, name: string, labels: Record<string, string>): number {
  const family = parsePrometheusText(text).find((f) => f.name === name);
  const sample = family?.samples.find((s) => s.name === `${name}_count` && Object.entries(labels).every(([k, v]) => s.labels.some(([n, lv]) => n === k && lv === v)));
  return Number(sample?.value ?? 0);
}

describe('metrics: the shim management socket and kata-ts-monitor', () => {
  let env: CriKataEnv;
  let dir: string;
  let cd: CriContainerd;
  let cri: CriClient;
  let images: CriImages;
  let baseline: HostSnapshot;
  let monitor: Monitor | undefined;

  beforeAll(async () => {
    expect(process.getuid?.()).toBe(0);
    env = await startCriKataEnv('/tmp/kt-met-');
    ({ dir, cd, cri, images, baseline } = env);
  });

  afterAll(async () => {
    await stopMonitor(monitor);
    expect((await env?.stop()) ?? []).toEqual([]);
    expect(await waitForNoLeaks(env.before, 30_000)).toEqual([]);
  });

  const stateDir = (): string => path.join(dir, 'vm');
  const socketOf = (podId: string): string => path.join(sandboxWorkDir(stateDir(), 'k8s.io', podId), 'shim-monitor.sock');

  async function runPod(name: string, namespace: string): Promise<Pod> {
    const config = podSandboxConfig(cd.cri, name, { namespace });
    const { pod_sandbox_id } = await cri.runPodSandbox({ config, runtime_handler: KATA_HANDLER });
    return { id: pod_sandbox_id, config, uid: config.metadata!.uid! };
  }

  async function removePod(pod: Pod): Promise<void> {
    await cri.stopPodSandbox({ pod_sandbox_id: pod.id });
    await cri.removePodSandbox({ pod_sandbox_id: pod.id });
    // kubelet removes the pod cgroup; the runtime only removes what it made.
    expect((await removeCgroupTreeOnceEmpty(pod.config.linux?.cgroup_parent ?? '')).failed).toEqual([]);
  }

  /** The uid label the monitor should give `pod`: containerd 1.6 may not pass the pod uid to the runtime at all. */
  function expectedCriUid(pod: Pod): string {
    const spec = JSON.parse(fs.readFileSync(path.join(cd.state, 'io.containerd.runtime.v2.task', 'k8s.io', pod.id, 'config.json'), 'utf8')) as { annotations?: Record<string, string> };
    return spec.annotations?.['io.kubernetes.cri.sandbox-uid'] ?? '';
  }

  async function curlMetrics(socket: string): Promise<string> {
    const r = await run('curl', ['-sS', '--fail', '--max-time', '60', '--unix-socket', socket, 'http://x/metrics'], { timeoutMs: 90_000 });
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    return r.stdout;
  }

  it('serves a running pod its metrics on the management socket, and kata-ts-monitor labels two pods and forgets a removed one', async () => {
    // Pod A runs a container with a memory limit: the VM grows for it (a memory hot-plug).
    const podA = await runPod('metrics-a', 'team-a');
    const { container_id: app } = await cri.createContainer({
      pod_sandbox_id: podA.id,
      config: containerConfig('app', images.busybox, ['sleep', '3600'], { linux: { resources: { memory_limit_in_bytes: 256 * MiB } } }),
      sandbox_config: podA.config,
    });
    await cri.startContainer({ container_id: app });
    expect((await cri.containerStatus({ container_id: app })).status?.state).toBe('CONTAINER_RUNNING');

    // Before anyone scrapes it, the idle shim sleeps: no runtime sampling timer (prom-client's
    // event-loop monitor, loaded at the first scrape, samples 100 times a second by default).
    const shimPid = Number(fs.readFileSync(path.join(cd.state, 'io.containerd.runtime.v2.task', 'k8s.io', podA.id, 'shim.pid'), 'utf8').split(' ')[0]); // pid and start time
    // Once the start's own work has settled: a 2 s window with 10 wake-ups or fewer (a
    // sampler at 100 Hz would make some 200 in each).
    let quiet = Infinity;
    for (let tries = 0; tries < 10 && quiet > 10; tries++) quiet = await wakeupsOver(shimPid, 2000);
    expect(quiet).toBeLessThanOrEqual(10);

    // The socket: beside the VM's own sockets in the sandbox's work dir, root's only.
    const socketA = socketOf(podA.id);
    const st = fs.statSync(socketA);
    expect({ socket: st.isSocket(), mode: st.mode & 0o777, uid: st.uid }).toEqual({ socket: true, mode: 0o600, uid: 0 });

    // curl, as an operator would; the guest's figures may miss a first scrape of a slow TCG guest.
    const text = await eventually(() => curlMetrics(socketA), (t) => samplesOf(parseExposition(t), 'kata_guest_meminfo_bytes').length > 0);
    const families: ParsedFamily[] = parseExposition(text);
    for (const name of NONZERO) expect({ name, value: valueOf(families, name) }).toEqual({ name, value: expect.any(Number) });
    for (const name of NONZERO) expect({ name, positive: valueOf(families, name) > 0 }).toEqual({ name, positive: true });
    // Node's runtime series come with the first scrape.
    expect(valueOf(families, 'kata_shim_process_cpu_seconds_total')).toBeGreaterThan(0);
    expect(samplesOf(families, 'kata_shim_nodejs_eventloop_lag_seconds')).toHaveLength(1);
    // The guest's word: 512 MiB booted plus the 256 MiB hot-plugged, less what the kernel keeps.
    const memTotal = valueOf(families, 'kata_guest_meminfo_bytes', { item: 'mem_total' });
    expect(memTotal).toBeGreaterThan(512 * MiB);
    expect(memTotal).toBeLessThanOrEqual(768 * MiB);
    expect(valueOf(families, 'kata_guest_meminfo_bytes', { item: 'mem_available' })).toBeGreaterThan(0);
    expect(samplesOf(families, 'kata_guest_load').map((s) => s.labels?.item).sort()).toEqual(['load1', 'load15', 'load5']);
    for (const s of samplesOf(families, 'kata_guest_load')) expect(Number(s.value)).toBeGreaterThanOrEqual(0);
    expect(valueOf(families, 'kata_guest_tasks', { item: 'total' })).toBeGreaterThan(0);
    // Agent calls by method, events, hot-plugs.
    expect(histogramCount(text, 'kata_agent_call_duration_seconds', { method: 'CreateContainer' })).toBeGreaterThanOrEqual(2); // pause and app
    expect(histogramCount(text, 'kata_agent_call_duration_seconds', { method: 'CreateSandbox' })).toBe(1);
    expect(valueOf(families, 'kata_shim_events_published_total', { topic: '/tasks/start' })).toBeGreaterThanOrEqual(2);
    expect(samplesOf(families, 'kata_shim_events_dropped_total').map((s) => [s.labels?.reason, Number(s.value)])).toEqual([
      ['queue_full', 0],
      ['gave_up', 0],
      ['closed', 0],
    ]);
    expect(valueOf(families, 'kata_hypervisor_hotplugs_total', { device: 'memory', op: 'add' })).toBeGreaterThanOrEqual(1);

    // /agent-url, and the CLI's view of the same socket.
    const agentUrl = await run('curl', ['-sS', '--fail', '--unix-socket', socketA, 'http://x/agent-url'], { timeoutMs: 30_000 });
    expect(agentUrl.stdout).toBe(`unix://${path.join(path.dirname(socketA), 'agent.sock')}`);
    const cli = await run(process.execPath, [RUNTIME_CLI, 'metrics', '--namespace', 'k8s.io', podA.id], { timeoutMs: 60_000, env: { ...process.env, KATATS_CONFIG: path.join(dir, 'config.json') } });
    expect({ code: cli.code, stderr: cli.code === 0 ? '' : cli.stderr }).toEqual({ code: 0, stderr: '' });
    expect(valueOf(parseExposition(cli.stdout), 'kata_hypervisor_rss_bytes')).toBeGreaterThan(0);

    // A second pod, in another Kubernetes namespace; then the node's monitor.
    const podB = await runPod('metrics-b', 'team-b');
    monitor = await startMonitor(stateDir());
    const port = monitor.port;
    const labelsOf = (pod: Pod, name: string, namespace: string) => ({ sandbox_id: pod.id, cri_name: name, cri_namespace: namespace, cri_uid: expectedCriUid(pod) });
    const both = await eventually(
      async () => parseExposition((await httpGet(port, '/metrics')).body),
      (f) => samplesOf(f, 'kata_guest_meminfo_bytes', { item: 'mem_total' }).length === 2,
    );
    for (const [pod, name, namespace] of [[podA, 'metrics-a', 'team-a'], [podB, 'metrics-b', 'team-b']] as const) {
      const labels = labelsOf(pod, name, namespace);
      expect({ pod: name, rss: valueOf(both, 'kata_hypervisor_rss_bytes', labels) > 0 }).toEqual({ pod: name, rss: true });
      expect({ pod: name, boot: valueOf(both, 'kata_hypervisor_boot_duration_seconds', labels) > 0 }).toEqual({ pod: name, boot: true });
      expect({ pod: name, memTotal: valueOf(both, 'kata_guest_meminfo_bytes', { ...labels, item: 'mem_total' }) > 0 }).toEqual({ pod: name, memTotal: true });
    }
    expect(valueOf(both, 'kata_monitor_running_shim_count')).toBe(2);
    expect((await httpGet(port, '/sandboxes')).body.split('\n').filter(Boolean).sort()).toEqual([podA.id, podB.id].sort());
    expect((await httpGet(port, `/agent-url?sandbox=${podA.id}`)).body).toBe(`${agentUrl.stdout}\n`);

    // Pod B removed: its socket goes with its work dir, and its series with it.
    await removePod(podB);
    expect(fs.existsSync(socketOf(podB.id))).toBe(false);
    const after = parseExposition((await httpGet(port, '/metrics')).body);
    const sandboxIds = new Set(after.flatMap((f) => f.metrics.map((m) => m.labels?.sandbox_id)).filter((id): id is string => id !== undefined));
    expect([...sandboxIds]).toEqual([podA.id]);
    expect(valueOf(after, 'kata_hypervisor_rss_bytes', labelsOf(podA, 'metrics-a', 'team-a'))).toBeGreaterThan(0);
    expect(valueOf(after, 'kata_monitor_running_shim_count')).toBe(1);
    expect(valueOf(after, 'kata_monitor_scrape_failures_total')).toBe(0);
    expect(await stopMonitor(monitor)).toBe(0);

    await removePod(podA);
    expect(fs.existsSync(socketA)).toBe(false);
    expect((await cri.listPodSandbox()).items).toEqual([]);
    expect(await waitForNoLeaks(baseline, 30_000, { ignoreCgroups: ['/katats-test', cd.cri.cgroupRoot] })).toEqual([]);
  });
});
