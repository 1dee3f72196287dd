import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { OciRuntime } from './oci-runtime';

describe('OciRuntime.version', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'oci-version-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** A runtime binary that counts its runs, and fails while `broken` exists. */
  function fakeRuntime(): { binary: string; runs: () => number; broken: string } {
    const binary = path.join(dir, 'crun');
    const count = path.join(dir, 'runs');
    const broken = path.join(dir, 'broken');
    fs.writeFileSync(binary, `#!/bin/sh\necho x >> ${count}\n[ -e ${broken} ] && { echo broken >&2; exit 1; }\necho "crun version 1.8.1"\necho "commit: abc"\n`, { mode: 0o755 });
    return { binary, runs: () => (fs.existsSync(count) ? fs.readFileSync(count, 'utf8').split('\n').filter(Boolean).length : 0), broken };
  }

  it('asks the binary once and keeps its first line', async () => {
    const fake = fakeRuntime();
    const runtime = new OciRuntime(fake.binary, dir);
    expect(await Promise.all([runtime.version(), runtime.version()])).toEqual(['crun version 1.8.1', 'crun version 1.8.1']);
    expect(await runtime.version()).toBe('crun version 1.8.1');
    expect(fake.runs()).toBe(1);
  });

  it('asks again after a failure rather than keeping it', async () => {
    const fake = fakeRuntime();
    fs.writeFileSync(fake.broken, '');
    const runtime = new OciRuntime(fake.binary, dir);
    await expect(runtime.version()).rejects.toThrow('broken');
    fs.rmSync(fake.broken);
    expect(await runtime.version()).toBe('crun version 1.8.1');
    expect(fake.runs()).toBe(2);
  });
});
