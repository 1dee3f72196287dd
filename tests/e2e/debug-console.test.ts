// kata-ts-runtime exec: a root shell in a running sandbox's guest over its debug
// console, through real containerd and QEMU. What the shell prints is checked against
// what the container itself sees (the same guest kernel and boot) and against the
// host (another kernel).
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as pty from 'node-pty';
import { run, RunResult } from '../harness/exec';
import { chooseAgentChannel } from '../../hypervisors/qemu/agent-channel-choice';
import { DEFAULT_VSOCK_BACKEND } from '../../hypervisors/vsock-backend';
import { HostSnapshot, snapshotHost, waitForNoLeaks } from '../harness/leaks';
import { dataPathFromEnv, KataEnv, REPO, removeContainer, RUNTIME, startKataEnv, writeConfig, expectCtrOk } from './kata-env';

jest.setTimeout(300_000);
const CLI = path.join(REPO, 'dist', 'cli', 'main.js');
/** A bound on each exec, so a hang fails the test instead of stalling it. */
const EXEC_TIMEOUT_MS = 120_000;
const BOOT_ID = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\r?$/gm;
const KERNEL_RELEASE = /^(\d+\.\d+\.\d+\S*?)\r?$/gm;
/** ash's prompt; it then asks the terminal where the cursor is (ESC [6n), which this one never answers. */
const PROMPT = /# (\x1b\[6n)?$/;
/** make test-vsock: the agent and the console are reached over vsock (agent_channel "hybrid-vsock", or "auto" resolving to it). */
const OVER_VSOCK = ((dataPath) => chooseAgentChannel(dataPath.agentChannel ?? 'virtio-serial', { vsockBackend: dataPath.vsockBackend ?? DEFAULT_VSOCK_BACKEND, ksm: 'unchanged' }).channel === 'hybrid-vsock')(dataPathFromEnv());

describe('kata-ts-runtime exec (debug console)', () => {
  let env: KataEnv;
  let baseline: HostSnapshot;

  beforeAll(async () => {
    env = await startKataEnv({ agent: { debugConsole: true } });
    baseline = await snapshotHost({ dirs: [env.stateDir, env.containerd.state] });
  });
  afterAll(async () => {
    await env?.stop();
  });

  /** `kata-ts-runtime exec <id>` with `script` as its (non-TTY) stdin. */
  function exec(sandboxId: string, script: string): Promise<RunResult> {
    return run(process.execPath, [CLI, 'exec', sandboxId], { input: script, timeoutMs: EXEC_TIMEOUT_MS, env: { ...process.env, KATATS_CONFIG: env.configPath } });
  }

  /** Runs `body` while container `id` (a sandbox of its own) runs; then removes it and checks nothing is left. */
  async function withContainer(id: string, body: () => Promise<void>): Promise<void> {
    const result = await env.containerd.ctr(['run', '-d', '--runtime', RUNTIME, env.image, id, 'sleep', '600'], { timeoutMs: 240_000 });
    try {
      expectCtrOk(result, () => env.containerd.logs(), id);
      await body();
    } finally {
      await removeContainer((args) => env.containerd.ctr(args), id);
    }
    expect(await waitForNoLeaks(baseline, 20_000)).toEqual([]);
  }

  it("opens a root shell in the guest's own namespaces: the container's kernel and boot, not the host's", async () => {
    const id = 'dbg-shell';
    await withContainer(id, async () => {
      // Over vsock the console is port 1026 behind the sandbox's hybrid vsock socket.
      const socket = fs.statSync(path.join(env.stateDir, env.containerd.namespace, id, OVER_VSOCK ? 'vsock/vsock.sock' : 'debug-console.sock'));
      expect(socket.isSocket()).toBe(true);
      expect(socket.mode & 0o777).toBe(0o600);

      const inContainer = await env.containerd.ctr(['task', 'exec', '--exec-id', 'boot-id', id, 'cat', '/proc/sys/kernel/random/boot_id']);
      expect(inContainer.code).toBe(0);
      const containerBootId = inContainer.stdout.trim();
      expect(containerBootId).toMatch(BOOT_ID);

      // Values the shell computes, so the terminal's echo of the script cannot match.
      const result = await exec(id, 'cat /proc/sys/kernel/random/boot_id; uname -r; echo "uid=$(id -u) sleeping=$(pidof sleep)"; exit\n');
      expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' });
      expect([...result.stdout.matchAll(BOOT_ID)].map((m) => m[1])).toEqual([containerBootId]);
      const kernels = [...result.stdout.matchAll(KERNEL_RELEASE)].map((m) => m[1]);
      expect(kernels).toEqual([guestKernelVersion(env.configPath)]);
      expect(kernels[0]).not.toBe(os.release());
      // Root, and in the guest's root pid namespace, where the container's sleep is one process among others.
      const [, uid, sleeping] = result.stdout.match(/uid=(\d+) sleeping=(\d+)/) ?? [];
      expect(uid).toBe('0');
      expect(Number(sleeping)).toBeGreaterThan(1);
    });
  });

  it('gives each later connection a new shell, also after a client vanished mid-command', async () => {
    const id = 'dbg-again';
    await withContainer(id, async () => {
      // A client killed while its shell runs a foreground command.
      const vanishing = spawn(process.execPath, [CLI, 'exec', id], { env: { ...process.env, KATATS_CONFIG: env.configPath }, stdio: ['pipe', 'pipe', 'pipe'] });
      let output = '';
      vanishing.stdout.on('data', (data: Buffer) => (output += data.toString()));
      vanishing.stdin.write('echo "first $((1 + 1))"; sleep 1000\n');
      await waitUntil(() => output.includes('first 2'), EXEC_TIMEOUT_MS, () => `the first client never saw its shell; it got: ${JSON.stringify(output)}`);
      const exited = new Promise((resolve) => vanishing.once('exit', resolve));
      vanishing.kill('SIGKILL');
      await exited;

      // The next client gets a new shell, and the old one's command was hung up with it.
      const second = await exec(id, 'echo "second $((2 + 2)) sleeping=$(pidof sleep | wc -w)"; exit 7\n');
      expect(second.code).toBe(7);
      expect(second.stdout).toMatch(/second 4 sleeping=1\r?$/m);
      // And after a shell that exited, the next connection gets a new one again.
      const third = await exec(id, 'echo "third $((3 + 3))"; exit\n');
      expect(third.code).toBe(0);
      expect(third.stdout).toMatch(/third 6/);
    });
  });

  it('on a terminal: raw mode, so Ctrl-C reaches the guest; the terminal is restored after', async () => {
    const id = 'dbg-tty';
    await withContainer(id, async () => {
      // The user's terminal; stty reports its modes once exec is done with it.
      const term = pty.spawn('sh', ['-c', `${process.execPath} ${CLI} exec ${id}; echo "exec exited $?"; stty -a`], {
        name: 'xterm', cols: 100, rows: 30, cwd: '/', env: { ...process.env, KATATS_CONFIG: env.configPath } as Record<string, string>,
      });
      let screen = '';
      term.onData((data) => (screen += data));
      const exited = new Promise<number>((resolve) => term.onExit(({ exitCode }) => resolve(exitCode)));
      const expectScreen = async (pattern: RegExp, from: number): Promise<void> =>
        waitUntil(() => pattern.test(screen.slice(from)), EXEC_TIMEOUT_MS, () => `the terminal never showed ${pattern}; screen:\n${screen}`);
      try {
        await expectScreen(PROMPT, 0);
        let mark = screen.length;
        term.write('echo "sleep $((6 * 7)) starts"; sleep 1000\r');
        await expectScreen(/sleep 42 starts/, mark);
        // Cooked, Ctrl-C would end exec here; raw, it interrupts the guest's sleep.
        term.write('\x03');
        await expectScreen(PROMPT, mark);
        mark = screen.length;
        term.write('echo "back $((1 + 2))"; exit 4\r');
        await expectScreen(/back 3/, mark);
        expect(await exited).toBe(0);
        expect(screen).toMatch(/exec exited 4/);
        // The pty may report the exit before the last of stty's output has been read.
        await expectScreen(/(^|\s)-?icanon(\s|$)[^]*(^|\s)-?echo(\s|$)|(^|\s)-?echo(\s|$)[^]*(^|\s)-?icanon(\s|$)/m, screen.indexOf('exec exited 4'));
        const modes = screen.slice(screen.indexOf('exec exited 4'));
        expect(modes).toMatch(/(^|\s)icanon(\s|$)/m);
        expect(modes).toMatch(/(^|\s)echo(\s|$)/m);
      } finally {
        term.kill('SIGKILL');
      }
    });
  });

  it('says so clearly for a sandbox without the console, and for one that does not exist', async () => {
    // Each sandbox's shim daemon reads the configuration when it starts.
    writeConfig(env.configPath, env.stateDir, { agent: { debugConsole: false } });
    const id = 'dbg-off';
    await withContainer(id, async () => {
      expect(fs.existsSync(path.join(env.stateDir, env.containerd.namespace, id, 'debug-console.sock'))).toBe(false);
      const off = await exec(id, 'exit\n');
      expect(off.code).toBe(1);
      expect(off.stderr).toContain(`debug console is not enabled for sandbox ${id}: set [agent.kata] debug_console_enabled = true`);
    });
    const missing = await exec('no-such-sandbox', 'exit\n');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('sandbox no-such-sandbox not found');
  });
});

/** The kernel of the guest image the configuration boots (guest/build.sh's manifest beside it). */
function guestKernelVersion(configPath: string): string {
  const config = JSON.parse(fs.readFileSync(configPath, 'utf8')) as { hypervisor: { kernel: string } };
  const manifest = JSON.parse(fs.readFileSync(path.join(path.dirname(config.hypervisor.kernel), 'manifest.json'), 'utf8')) as { kernelVersion: string };
  return manifest.kernelVersion;
}

async function waitUntil(condition: () => boolean, timeoutMs: number, explain: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(explain());
    await new Promise((r) => setTimeout(r, 100));
  }
}
