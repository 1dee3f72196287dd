import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { openFifoReader, openFifoWriter } from './fifo';

describe('stdio FIFOs', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-fifo-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  let n = 0;
  const mkfifo = (): string => {
    const p = path.join(dir, `fifo-${n++}`);
    execFileSync('mkfifo', [p]);
    return p;
  };
  const readAll = (stream: NodeJS.ReadableStream): Promise<string> =>
    new Promise((resolve, reject) => {
      let text = '';
      stream.on('data', (d: Buffer) => (text += d.toString()));
      stream.on('end', () => resolve(text));
      stream.on('error', reject);
    });

  it('open their read end at once with no writer, and see no EOF until a writer came and went', async () => {
    const fifo = mkfifo();
    const reader = await openFifoReader(fifo);
    const text = readAll(reader);
    let ended = false;
    void text.then(() => (ended = true));
    await new Promise((r) => setTimeout(r, 200));
    expect(ended).toBe(false);
    const fd = fs.openSync(fifo, 'w');
    fs.writeSync(fd, 'late writer');
    fs.closeSync(fd);
    expect(await text).toBe('late writer');
  });

  it('do not occupy the thread pool: 20 readers without writers leave file operations working', async () => {
    // libuv's pool has 4 threads; 20 blocking opens would starve readFile below.
    const readers = await Promise.all(Array.from({ length: 20 }, () => openFifoReader(mkfifo())));
    const probe = path.join(dir, 'probe');
    fs.writeFileSync(probe, 'ok');
    expect(await fs.promises.readFile(probe, 'utf8')).toBe('ok');
    for (const r of readers) r.destroy();
  });

  it('write end: undefined when no reader appears within the bound', async () => {
    expect(await openFifoWriter(mkfifo(), 100)).toBeUndefined();
  });

  it('write end: delivers to a reader and ends it', async () => {
    const fifo = mkfifo();
    const reader = await openFifoReader(fifo);
    const text = readAll(reader);
    const writer = await openFifoWriter(fifo);
    expect(writer).toBeDefined();
    writer!.end('to containerd');
    expect(await text).toBe('to containerd');
  });

  it('refuse a path that is not a FIFO', async () => {
    const file = path.join(dir, 'regular');
    fs.writeFileSync(file, '');
    await expect(openFifoReader(file)).rejects.toThrow(/not a FIFO/);
    expect(await openFifoWriter(file, 50)).toBeUndefined();
  });
});
