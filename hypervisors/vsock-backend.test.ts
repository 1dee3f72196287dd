import { spawn } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { silentLogger } from '../lib/logger';
import { processStartTime, readProcessRecord, recordAlive } from '../lib/recorded-process';
import { killRecordedVsockBackend, startVsockBackend, stopVsockBackend, vsockBackendArgs, vsockBackendPaths, vsockBackendVersion } from './vsock-backend';
import { listeningUnixSocket } from './vmm-process';

/** The binary scripts/fetch-vhost-device-vsock.sh caches (make test-unit fetches it), or Debian's. */
const BACKEND = [process.env.KATATS_VSOCK_BACKEND, '/var/cache/kata-ts/vhost-device-vsock/unstable/root/usr/bin/vhost-device-vsock', '/usr/bin/vhost-device-vsock'].find((f) => f && fs.existsSync(f));

describe('vsock backend (vhost-device-vsock)', () => {
  let workDir: string;
  beforeEach(() => (workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vsock-backend-'))));
  afterEach(() => fs.rmSync(workDir, { recursive: true, force: true }));

  it('gets a guest CID, its vhost-user socket and the hybrid socket in a directory of its own, its record outside it', () => {
    const paths = vsockBackendPaths('/w', '/w/vsock/vsock.sock');
    expect(paths).toEqual({ dir: '/w/vsock', vhostUserSocket: '/w/vsock/vhost.sock', hybridSocket: '/w/vsock/vsock.sock', record: '/w/vsock-backend.pid' });
    expect(vsockBackendArgs(paths)).toEqual(['--guest-cid=3', '--socket=vhost.sock', '--uds-path=vsock.sock']);
    expect(() => vsockBackendPaths('/w', '/w/vsock.sock')).toThrow('must be in a directory of its own');
  });

  it('refuses a backend that is missing or is something else, saying what to do', async () => {
    await expect(vsockBackendVersion('/nonexistent/vhost-device-vsock')).rejects.toThrow('is not an executable file; fetch it with scripts/fetch-vhost-device-vsock.sh');
    await expect(vsockBackendVersion('/bin/true')).rejects.toThrow("not vhost-device-vsock's version");
  });

  (BACKEND ? it : it.skip)('starts the real backend as nobody, without capabilities, in namespaces of its own, listening and root-only; stop leaves no process or socket', async () => {
    expect(await vsockBackendVersion(BACKEND!)).toMatch(/^vhost-device-vsock \d+\.\d+/);
    const paths = vsockBackendPaths(workDir, path.join(workDir, 'vsock', 'vsock.sock'));
    // A crashed predecessor's directory, with a symlink out: removed, not followed.
    fs.mkdirSync(paths.dir);
    fs.symlinkSync(workDir, path.join(paths.dir, 'out'));
    const backend = await startVsockBackend(BACKEND!, paths, silentLogger());
    const pid = backend.process.pid!;
    try {
      expect(await listeningUnixSocket('vhost.sock', `/proc/${pid}/net/unix`)).toBe(true);
      expect(fs.statSync(paths.hybridSocket).mode & 0o777).toBe(0o600);
      const dir = fs.statSync(paths.dir);
      expect({ uid: dir.uid, gid: dir.gid, mode: dir.mode & 0o777, entries: fs.readdirSync(paths.dir).sort() }).toEqual({ uid: 65534, gid: 65534, mode: 0o700, entries: ['vhost.sock', 'vsock.sock'] });
      const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
      for (const set of ['CapPrm', 'CapEff', 'CapBnd', 'CapInh', 'CapAmb']) expect(status).toMatch(new RegExp(`^${set}:\\s+0+$`, 'm'));
      expect(status).toMatch(/^Uid:\s+65534\s+65534\s+65534\s+65534$/m);
      expect(status).toMatch(/^Gid:\s+65534\s+65534\s+65534\s+65534$/m);
      expect(status).toMatch(/^Groups:\s*$/m);
      expect(status).toMatch(/^NoNewPrivs:\s+1$/m);
      for (const ns of ['net', 'ipc']) expect(fs.readlinkSync(`/proc/${pid}/ns/${ns}`)).not.toBe(fs.readlinkSync(`/proc/self/ns/${ns}`));
      expect(recordAlive(readProcessRecord(paths.record))).toBe(true);
    } finally {
      await stopVsockBackend(backend);
    }
    expect(await backend.process.exitsWithin(0)).toBe(true);
    expect(fs.existsSync(paths.dir)).toBe(false);
    expect(fs.existsSync(workDir)).toBe(true);
    // Before QEMU connects, a hybrid-vsock client is refused rather than left hanging.
    await expect(new Promise((resolve, reject) => net.createConnection(paths.hybridSocket).once('connect', resolve).once('error', reject))).rejects.toThrow('ENOENT');
  });

  it('after a crash, kills the backend a work dir records, and leaves a reused pid alone', async () => {
    const backend = spawn('sleep', ['60'], { stdio: 'ignore' });
    const exited = new Promise((resolve) => backend.once('exit', resolve));
    try {
      await new Promise((resolve) => backend.once('spawn', resolve));
      const record = path.join(workDir, 'vsock-backend.pid');
      fs.writeFileSync(record, `${process.pid} 1\n`); // this process, another start time: a reused pid
      expect(await killRecordedVsockBackend(workDir)).toBeUndefined();
      fs.writeFileSync(record, `${backend.pid} ${processStartTime(backend.pid!)}\n`);
      expect(await killRecordedVsockBackend(workDir)).toBe(backend.pid);
      await exited;
      expect(await killRecordedVsockBackend(path.join(workDir, 'gone'))).toBeUndefined();
    } finally {
      backend.kill('SIGKILL');
    }
  });
});
