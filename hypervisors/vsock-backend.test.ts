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

  it('gets a guest CID, its vhost-user socket and the hybrid socket in the work dir', () => {
    const paths = vsockBackendPaths('/w', '/w/vsock.sock');
    expect(vsockBackendArgs(paths)).toEqual(['--guest-cid=3', '--socket=/w/vhost-vsock.sock', '--uds-path=/w/vsock.sock']);
  });

  it('refuses a backend that is missing or is something else, saying what to do', async () => {
    await expect(vsockBackendVersion('/nonexistent/vhost-device-vsock')).rejects.toThrow('is not an executable file; fetch it with scripts/fetch-vhost-device-vsock.sh');
    await expect(vsockBackendVersion('/bin/true')).rejects.toThrow("not vhost-device-vsock's version");
  });

  (BACKEND ? it : it.skip)('starts the real backend with no capabilities, listening and root-only, and stop leaves no process or socket', async () => {
    expect(await vsockBackendVersion(BACKEND!)).toMatch(/^vhost-device-vsock \d+\.\d+/);
    const paths = vsockBackendPaths(workDir, path.join(workDir, 'vsock.sock'));
    const backend = await startVsockBackend(BACKEND!, paths, silentLogger());
    try {
      expect(await listeningUnixSocket(paths.vhostUserSocket)).toBe(true);
      expect(fs.statSync(paths.hybridSocket).mode & 0o777).toBe(0o600);
      const status = fs.readFileSync(`/proc/${backend.process.pid}/status`, 'utf8');
      for (const set of ['CapPrm', 'CapEff', 'CapBnd', 'CapInh', 'CapAmb']) expect(status).toMatch(new RegExp(`^${set}:\\s+0+$`, 'm'));
      expect(recordAlive(readProcessRecord(paths.record))).toBe(true);
    } finally {
      await stopVsockBackend(backend);
    }
    expect(await backend.process.exitsWithin(0)).toBe(true);
    expect(fs.existsSync(paths.vhostUserSocket) || fs.existsSync(paths.hybridSocket)).toBe(false);
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
