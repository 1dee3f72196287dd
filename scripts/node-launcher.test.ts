import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const SCRIPT = path.join(__dirname, 'node-launcher.sh');

describe('node-launcher.sh', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-launcher-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** A program that reports what it was started with. */
  function writeProgram(name: string): string {
    const main = path.join(dir, name);
    fs.writeFileSync(main, 'process.stdout.write(JSON.stringify({ args: process.argv.slice(2), ca: process.env.NODE_EXTRA_CA_CERTS ?? null, other: process.env.KT_OTHER ?? null }));');
    return main;
  }

  it('runs the program with node, its arguments untouched, and without NODE_EXTRA_CA_CERTS', () => {
    // What the launcher's shell would otherwise read: a space, $, `, ", ' and a backslash.
    const main = writeProgram('main with $HOME `id` "q" \'s\' \\.js');
    const launcher = path.join(dir, 'containerd-shim-kata-v2');
    execFileSync(SCRIPT, [process.execPath, main, launcher]);
    expect(fs.statSync(launcher).mode & 0o777).toBe(0o755);
    const out = execFileSync(launcher, ['start', 'a b', '$HOME', '"q"'], { env: { ...process.env, NODE_EXTRA_CA_CERTS: '/nonexistent/ca.pem', KT_OTHER: 'kept' } });
    expect(JSON.parse(out.toString())).toEqual({ args: ['start', 'a b', '$HOME', '"q"'], ca: null, other: 'kept' });
  });

  it('replaces an existing launcher whole', () => {
    const launcher = path.join(dir, 'launcher');
    fs.writeFileSync(launcher, '#!/bin/sh\necho old\n', { mode: 0o755 });
    execFileSync(SCRIPT, [process.execPath, writeProgram('main.js'), launcher]);
    expect(JSON.parse(execFileSync(launcher).toString()).args).toEqual([]);
    expect(fs.readdirSync(dir).sort()).toEqual(['launcher', 'main.js']);
  });

  it('refuses a wrong number of arguments', () => {
    expect(() => execFileSync(SCRIPT, [process.execPath], { stdio: 'pipe' })).toThrow(/usage/);
  });
});
