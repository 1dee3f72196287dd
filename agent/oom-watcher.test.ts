import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { OomWatcher, parseOomKillCount } from './oom-watcher';

const events = (oomKill: number, oom = oomKill) => `low 0\nhigh 0\nmax ${oom * 3}\noom ${oom}\noom_kill ${oomKill}\noom_group_kill 0\n`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `predicate` holds (or fails after `timeoutMs`). */
async function until(predicate: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(10);
  }
}

describe('OomWatcher', () => {
  let tmp: string;
  let watcher: OomWatcher;
  let fired: Array<[string, number]>;

  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'oom-watcher-'));
    fired = [];
  });
  afterEach(() => {
    watcher?.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  function start(opts: ConstructorParameters<typeof OomWatcher>[0] = { pollIntervalMs: 50 }): OomWatcher {
    watcher = new OomWatcher(opts);
    watcher.on('oom', (id: string, count: number) => fired.push([id, count]));
    return watcher;
  }

  for (const mode of [
    { name: 'fs.watch + poll', opts: { pollIntervalMs: 50 } },
    { name: 'poll only', opts: { pollIntervalMs: 30, useFsWatch: false } },
    { name: 'fs.watch only (poll too slow to matter)', opts: { pollIntervalMs: 60_000 } },
  ]) {
    it(`fires once per increment, not for the initial count (${mode.name})`, async () => {
      const file = path.join(tmp, 'memory.events');
      fs.writeFileSync(file, events(2));
      start(mode.opts);
      expect(watcher.watch('c1', file)).toBe(true);

      await sleep(150);
      expect(fired).toEqual([]);

      fs.writeFileSync(file, events(3));
      await until(() => fired.length === 1);
      await sleep(150); // both triggers had their chance: still one event
      expect(fired).toEqual([['c1', 3]]);

      fs.writeFileSync(file, events(4));
      await until(() => fired.length === 2);
      // Other counters moving without oom_kill changing do not fire.
      fs.writeFileSync(file, events(4, 9));
      await sleep(150);
      expect(fired).toEqual([
        ['c1', 3],
        ['c1', 4],
      ]);
    });
  }

  it('watches several containers independently', async () => {
    const a = path.join(tmp, 'a.events');
    const b = path.join(tmp, 'b.events');
    fs.writeFileSync(a, events(0));
    fs.writeFileSync(b, events(7));
    start();
    watcher.watch('a', a);
    watcher.watch('b', b);
    fs.writeFileSync(b, events(8));
    await until(() => fired.length === 1);
    fs.writeFileSync(a, events(1));
    await until(() => fired.length === 2);
    await sleep(120);
    expect(fired).toEqual([
      ['b', 8],
      ['a', 1],
    ]);
  });

  it('stops firing after unwatch', async () => {
    const file = path.join(tmp, 'memory.events');
    fs.writeFileSync(file, events(0));
    start();
    watcher.watch('c1', file);
    watcher.unwatch('c1');
    watcher.unwatch('unknown'); // harmless
    expect(watcher.watchedIds()).toEqual([]);
    fs.writeFileSync(file, events(1));
    await sleep(200);
    expect(fired).toEqual([]);
  });

  it('re-watching an id takes a fresh baseline', async () => {
    const file = path.join(tmp, 'memory.events');
    fs.writeFileSync(file, events(1));
    start();
    watcher.watch('c1', file);
    fs.writeFileSync(file, events(2));
    await until(() => fired.length === 1);
    fs.writeFileSync(file, events(5));
    watcher.watch('c1', file); // baseline now 5
    await sleep(150);
    expect(fired).toEqual([['c1', 2]]);
  });

  it('drops a watch silently when the file disappears, and refuses missing files', async () => {
    const file = path.join(tmp, 'memory.events');
    fs.writeFileSync(file, events(0));
    start();
    const errors: unknown[] = [];
    watcher.on('error', (err) => errors.push(err));
    watcher.watch('c1', file);
    fs.rmSync(file);
    await until(() => watcher.watchedIds().length === 0);
    expect(fired).toEqual([]);
    expect(errors).toEqual([]);
    expect(watcher.watch('c2', path.join(tmp, 'no-such-cgroup', 'memory.events'))).toBe(false);
    expect(watcher.watchedIds()).toEqual([]);
  });

  it('ignores a half-written file instead of re-baselining to zero', async () => {
    const file = path.join(tmp, 'memory.events');
    fs.writeFileSync(file, events(3));
    start({ pollIntervalMs: 20, useFsWatch: false });
    watcher.watch('c1', file);
    fs.writeFileSync(file, 'low 0\nhigh 0\n');
    await sleep(80);
    fs.writeFileSync(file, events(3));
    await sleep(80);
    expect(fired).toEqual([]);
  });

  it('close() stops everything, clears the poll timer and refuses new watches', async () => {
    const file = path.join(tmp, 'memory.events');
    fs.writeFileSync(file, events(0));
    start({ pollIntervalMs: 10 });
    const clear = jest.spyOn(global, 'clearInterval');
    try {
      watcher.watch('c1', file);
      watcher.close();
      expect(clear).toHaveBeenCalledTimes(1);
    } finally {
      clear.mockRestore();
    }
    expect(watcher.watchedIds()).toEqual([]);
    expect(watcher.watch('c2', file)).toBe(false);
    fs.writeFileSync(file, events(1));
    await sleep(100);
    expect(fired).toEqual([]);
  });

  it('parses oom_kill only as a whole key', () => {
    expect(parseOomKillCount(events(12))).toBe(12n);
    expect(parseOomKillCount('low 0\noom_group_kill 3\n')).toBeUndefined();
    expect(parseOomKillCount('')).toBeUndefined();
  });
});
