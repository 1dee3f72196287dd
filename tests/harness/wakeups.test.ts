import { wakeups, wakeupsOver } from './wakeups';

describe('wakeups', () => {
  it('counts the times a process went to sleep: this one, across timers', async () => {
    const before = wakeups(process.pid);
    for (let i = 0; i < 3; i++) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(wakeups(process.pid) - before).toBeGreaterThanOrEqual(3);
  });

  it('counts them over a window', async () => {
    const timer = setInterval(() => undefined, 10);
    try {
      expect(await wakeupsOver(process.pid, 200)).toBeGreaterThanOrEqual(5);
    } finally {
      clearInterval(timer);
    }
  });
});
