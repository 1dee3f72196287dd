import { PassThrough } from 'stream';
import { OutputBuffer } from './output-buffer';

describe('OutputBuffer', () => {
  it('hands out data in order, in pieces of at most maxLen, then eof', async () => {
    const source = new PassThrough();
    const buffer = new OutputBuffer(source);
    source.write('hello ');
    source.write('world');
    source.end();
    await buffer.finished;
    const parts: string[] = [];
    for (;;) {
      const { data, eof } = await buffer.read(4);
      if (eof) break;
      expect(data.length).toBeLessThanOrEqual(4);
      parts.push(data.toString());
    }
    expect(parts.join('')).toBe('hello world');
  });

  it('blocks a read until data arrives', async () => {
    const source = new PassThrough();
    const buffer = new OutputBuffer(source);
    const pending = buffer.read(100);
    source.write('late');
    expect((await pending).data.toString()).toBe('late');
  });

  it('pauses the source above the high-water mark and resumes once drained', async () => {
    const source = new PassThrough();
    const buffer = new OutputBuffer(source, 10);
    source.write(Buffer.alloc(16));
    await new Promise((r) => setImmediate(r));
    expect(source.isPaused()).toBe(true);
    await buffer.read(16);
    expect(source.isPaused()).toBe(false);
  });

  it('reports eof at once when there is no source', async () => {
    expect(await new OutputBuffer(null).read(10)).toEqual({ data: Buffer.alloc(0), eof: true });
  });
});
