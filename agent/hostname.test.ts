import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { setHostname } from './agent-service';

describe('setHostname', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-hostname-'));
  const file = path.join(dir, 'hostname');
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('writes the name as it is, up to the 64 bytes the kernel takes', () => {
    setHostname('pod-a', file);
    expect(fs.readFileSync(file, 'utf8')).toBe('pod-a');
    setHostname('x'.repeat(64), file);
    expect(fs.readFileSync(file, 'utf8')).toBe('x'.repeat(64));
  });

  it('refuses a name that /proc would cut (longer than 64 bytes, or with a newline), writing nothing', () => {
    fs.writeFileSync(file, 'before');
    expect(() => setHostname('x'.repeat(65), file)).toThrow('at most 64 bytes');
    expect(() => setHostname('é'.repeat(33), file)).toThrow('at most 64 bytes'); // 66 bytes in 33 characters
    expect(() => setHostname('pod\nother', file)).toThrow('no newline');
    expect(fs.readFileSync(file, 'utf8')).toBe('before');
  });
});
