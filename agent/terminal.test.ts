import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnOnTerminal } from './terminal';
import { ProcessHandle } from './process-handle';

/** Everything the process wrote to its terminal, once it exited, with its exit status. */
async function outputAndStatus(handle: ProcessHandle): Promise<{ output: string; status: number }> {
  const chunks: Buffer[] = [];
  handle.stdout!.on('data', (chunk: Buffer) => chunks.push(chunk));
  const status = await handle.exited;
  return { output: Buffer.concat(chunks).toString('utf8'), status };
}

/** A shell script, killed after 5 s: a test that fails must not leave it waiting for input. */
const bounded = (script: string): string[] => ['5', 'sh', '-c', script];

describe('spawnOnTerminal', () => {
  it('gives the process all input typed before it reads: the agent holds no reader on the terminal', async () => {
    // The line is complete (so readable) while the process still sleeps; any other
    // reader of the terminal's slave end, an agent's idle socket among them, takes it first.
    const handle = spawnOnTerminal('timeout', bounded('sleep 0.5; read -r line; echo "got:$line"; exit 3'));
    handle.stdin!.write('typed early\n');
    const { output, status } = await outputAndStatus(handle);
    expect(output).toMatch(/got:typed early/);
    expect(status).toBe(3);
  }, 10_000);

  it('keeps output written just before the exit, however long the process was quiet before it', async () => {
    // Many at once, so some exits are seen before their last output was read (when the
    // agent waited for a quiet moment instead of the terminal's end, 4 in 100 lost it).
    const results = await Promise.all(Array.from({ length: 100 }, () => outputAndStatus(spawnOnTerminal('timeout', bounded('sleep 0.2; printf tail-of-output; exit 7')))));
    for (const { output, status } of results) {
      expect(output).toBe('tail-of-output');
      expect(status).toBe(7);
    }
  }, 20_000);

  it('does not wait for a process left behind on the terminal', async () => {
    const pidFile = path.join(os.tmpdir(), `left-behind-${process.pid}`);
    try {
      const handle = spawnOnTerminal('sh', ['-c', `sleep 60 & echo $! > ${pidFile}; exit 2`]);
      expect((await outputAndStatus(handle)).status).toBe(2);
    } finally {
      if (fs.existsSync(pidFile)) process.kill(Number(fs.readFileSync(pidFile, 'utf8')), 'SIGKILL');
      fs.rmSync(pidFile, { force: true });
    }
  }, 10_000);

  it('runs the process on a terminal, with the size it was given', async () => {
    // The process waits for a line, sent after the resize, before it looks at its size.
    const handle = spawnOnTerminal('timeout', bounded('read -r _; stty size; test -t 0 && test -t 1 && echo on-a-terminal'));
    handle.resize!(123, 45);
    handle.stdin!.write('\n');
    const { output, status } = await outputAndStatus(handle);
    expect(output).toMatch(/^45 123\r?$/m);
    expect(output).toMatch(/on-a-terminal/);
    expect(status).toBe(0);
  }, 10_000);

  it('ends input with the terminal’s end-of-file character when stdin is closed', async () => {
    const handle = spawnOnTerminal('timeout', bounded('cat >/dev/null; echo "cat saw the end"'));
    handle.stdin!.end('some input\n');
    const { output, status } = await outputAndStatus(handle);
    expect(output).toMatch(/cat saw the end/);
    expect(status).toBe(0);
  }, 10_000);
});
