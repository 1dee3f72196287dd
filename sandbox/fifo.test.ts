import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { openFifoReader, releaseAllPendingReaders, releasePendingReader } from './fifo';

describe('FIFO reader opens waiting for a writer', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-fifo-'));
  const mkfifo = (name: string): string => {
    const p = path.join(dir, name);
    execFileSync('mkfifo', [p]);
    return p;
  };

  it('are released before exit, so no pool thread stays blocked', async () => {
    const fifo = mkfifo('stdin');
    const reader = openFifoReader(fifo);
    await new Promise((r) => setTimeout(r, 50)); // the open is now blocked in the pool
    expect(await releaseAllPendingReaders()).toEqual([]);
    const stream = await reader;
    stream.destroy();
  });

  it('report the ones whose FIFO path is gone (exit would hang on them)', async () => {
    const fifo = mkfifo('gone');
    const spare = path.join(dir, 'spare-link');
    fs.linkSync(fifo, spare); // kept only so the test can free its pool thread afterwards
    const reader = openFifoReader(fifo);
    await new Promise((r) => setTimeout(r, 50));
    fs.unlinkSync(fifo);
    expect(await releaseAllPendingReaders()).toEqual([fifo]);
    await releasePendingReader(spare);
    (await reader).destroy();
    expect(await releaseAllPendingReaders()).toEqual([]);
  });
});
