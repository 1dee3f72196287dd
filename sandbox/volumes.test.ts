import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { planVolumes } from './volumes';

describe('planVolumes', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-vol-'));
  const file = path.join(dir, 'hosts');
  fs.writeFileSync(file, '127.0.0.1 localhost\n');
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('shares host files and directories under the container and points the spec at the guest paths', async () => {
    const plan = await planVolumes(
      'c1',
      [
        { destination: '/proc', type: 'proc', source: 'proc' },
        { destination: '/etc/hosts', type: 'bind', source: file, options: ['rbind', 'rprivate', 'rw'] },
        { destination: '/data', type: 'bind', source: dir, options: ['rbind', 'ro'] },
        { destination: '/dev/shm', type: 'bind', source: '/run/containerd/sandboxes/p1/shm', options: ['rbind', 'rw'] },
      ],
      '/run/kata-ts/p1/mounts',
    );
    expect(plan.mounts).toEqual([
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/etc/hosts', type: 'bind', source: '/run/kata-containers/shared/c1/mounts/0', options: ['rbind', 'rprivate', 'rw'] },
      { destination: '/data', type: 'bind', source: '/run/kata-containers/shared/c1/mounts/1', options: ['rbind', 'ro'] },
      { destination: '/dev/shm', type: 'bind', source: '/run/kata-containers/sandbox/shm', options: ['rbind', 'rw'] },
    ]);
    expect(plan.shares).toEqual([
      { hostSource: file, sharedPath: '/run/kata-ts/p1/mounts/c1/mounts/0', isDirectory: false, readonly: false },
      { hostSource: dir, sharedPath: '/run/kata-ts/p1/mounts/c1/mounts/1', isDirectory: true, readonly: true },
    ]);
  });

  it('refuses sources that cannot cross into a VM, naming the mount', async () => {
    const socketPath = path.join(dir, 'api.sock');
    const server = net.createServer().listen(socketPath);
    await new Promise((r) => server.once('listening', r));
    try {
      await expect(planVolumes('c1', [{ destination: '/var/run/api.sock', type: 'bind', source: socketPath, options: ['rbind'] }], '/s')).rejects.toThrow(
        `container c1: mount /var/run/api.sock: host source ${socketPath} is a Unix socket, which cannot be shared into the VM`,
      );
    } finally {
      server.close();
    }
    await expect(planVolumes('c1', [{ destination: '/x', type: 'bind', source: path.join(dir, 'missing'), options: ['rbind'] }], '/s')).rejects.toThrow('host source ' + path.join(dir, 'missing') + ' cannot be used (ENOENT)');
    await expect(planVolumes('c1', [{ destination: '/x', type: 'bind', source: 'relative', options: ['bind'] }], '/s')).rejects.toThrow("bind source 'relative' is not an absolute host path");
  });
});
