import { spawn } from 'child_process';
import { setThreadsPriority, threadPriorities } from './thread-priority';

describe('setThreadsPriority', () => {
  it("sets every thread of a process, not only its main thread's", async () => {
    // Node runs several threads (V8's platform workers, libuv's pool once used).
    const child = spawn(process.execPath, ['-e', 'require("fs").readFile(__filename, () => undefined); setTimeout(() => undefined, 60_000)'], { stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 300));
      expect(threadPriorities(child.pid!).length).toBeGreaterThan(1);
      setThreadsPriority(child.pid!, 7);
      expect(new Set(threadPriorities(child.pid!))).toEqual(new Set([7]));
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('does nothing for a process that is gone', () => {
    expect(() => setThreadsPriority(2 ** 22 + 1, 5)).not.toThrow();
  });
});
