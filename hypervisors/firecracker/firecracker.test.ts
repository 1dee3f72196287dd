// The driver against the recorded-request fake (hypervisors/testing/): every request
// it makes is checked there against our description of the upstream Swagger file.
import * as path from 'path';
import { FailedPreconditionError, NotImplementedError } from '../../lib/errors';
import { silentLogger } from '../../lib/logger';
import { VmmApiError } from '../http-unix';
import { connectHybridVsock } from '../hybrid-vsock';
import { fakeVmmWorkspace } from '../testing/fake-vmm-binary';
import { describeWithRealBinary } from '../testing/real-binary';
import { AGENT_VSOCK_PORT, testVmConfig } from '../testing/vm-fixture';
import { Firecracker } from './firecracker';

describe('Firecracker driver (recorded-request fake)', () => {
  const fakes = fakeVmmWorkspace('fc-test-');

  it('configures, starts, pauses, resumes and stops with exactly these requests', async () => {
    const fake = fakes.kit.binary({ flavour: 'firecracker', guestPorts: [AGENT_VSOCK_PORT], consoleText: 'Linux version 6.1 (fake)\n' });
    const vm = testVmConfig(fakes.dir, fake.path);
    const fc = new Firecracker(silentLogger());
    await fc.addDevice({ kind: 'block', id: 'image0', hostPath: '/img/base.raw', readOnly: true });
    await fc.addDevice({ kind: 'network', id: 'eth0', tapName: 'tap0', macAddress: '02:00:00:00:00:01' });
    await fc.start(vm);
    expect(fc.pid()).toEqual(expect.any(Number));

    const agent = await connectHybridVsock(path.join(vm.workDir, 'vsock.sock'), AGENT_VSOCK_PORT, 2000);
    agent.destroy();
    await fc.pause();
    expect(await fc.vmState()).toBe('Paused');
    await fc.resume();
    await expect(fc.addDevice({ kind: 'block', id: 'disk1', hostPath: '/img/data.raw', readOnly: false })).rejects.toThrow(
      new FailedPreconditionError('firecracker cannot hot-plug devices: add block device disk1 before start()'),
    );
    expect(fc.consoleTail()).toBe('Linux version 6.1 (fake)\n');
    await fc.stop(0);
    expect(await fc.exited).toEqual({ code: 0, signal: null });

    expect(fake.argv()).toEqual(['--api-sock', `${vm.workDir}/firecracker-api.sock`]);
    expect(fake.requests()).toEqual([
      { method: 'GET', path: '/', status: 200 },
      { method: 'PUT', path: '/boot-source', status: 204, body: { kernel_image_path: vm.kernelPath, initrd_path: vm.rootfs.path, boot_args: 'console=ttyS0 quiet katats.agent_vsock=1' } },
      { method: 'PUT', path: '/machine-config', status: 204, body: { vcpu_count: 2, mem_size_mib: 512 } },
      { method: 'PUT', path: '/drives/image0', status: 204, body: { drive_id: 'image0', path_on_host: '/img/base.raw', is_root_device: false, is_read_only: true } },
      { method: 'PUT', path: '/network-interfaces/eth0', status: 204, body: { iface_id: 'eth0', host_dev_name: 'tap0', guest_mac: '02:00:00:00:00:01' } },
      { method: 'PUT', path: '/vsock', status: 204, body: { guest_cid: 3, uds_path: `${vm.workDir}/vsock.sock` } },
      { method: 'PUT', path: '/actions', status: 204, body: { action_type: 'InstanceStart' } },
      { method: 'PATCH', path: '/vm', status: 204, body: { state: 'Paused' } },
      { method: 'GET', path: '/', status: 200 },
      { method: 'PATCH', path: '/vm', status: 204, body: { state: 'Resumed' } },
      // How the driver asks Firecracker to end: the guest reboots, Firecracker exits.
      ...(process.arch === 'x64' ? [{ method: 'PUT', path: '/actions', status: 204, body: { action_type: 'SendCtrlAltDel' } }] : []),
    ]);
  });

  it('surfaces a request the VMM rejects (400 from the schema check) with endpoint, status and message', async () => {
    const fake = fakes.kit.binary({ flavour: 'firecracker' });
    const fc = new Firecracker(silentLogger());
    await fc.addDevice({ kind: 'block', id: 'root-fs', hostPath: '/img/base.raw', readOnly: true });
    const err = await fc.start(testVmConfig(fakes.dir, fake.path)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VmmApiError);
    expect((err as Error).message).toBe('firecracker API PUT /drives/root-fs failed with HTTP 400: path {drive_id}: must match /^[A-Za-z0-9_]+$/, got "root-fs"');
    expect(await fc.exited).toEqual({ code: null, signal: 'SIGKILL' });
  });

  it('reports a VMM that dies during start-up with its stderr', async () => {
    const fake = fakes.kit.binary({
      flavour: 'firecracker',
      crashOn: { method: 'PUT', path: '/actions', exitCode: 1, stderr: 'Failed to start microVM: cannot create vCPU\n' },
    });
    const fc = new Firecracker(silentLogger());
    await expect(fc.start(testVmConfig(fakes.dir, fake.path))).rejects.toThrow('firecracker exited during InstanceStart (exit code 1): Failed to start microVM: cannot create vCPU');
  });

  it('refuses shared directories, which Firecracker has no device for, before spawning anything', async () => {
    const fake = fakes.kit.binary({ flavour: 'firecracker' });
    const vm = testVmConfig(fakes.dir, fake.path, { sharedDirectories: [{ tag: 'kataShared', hostPath: fakes.dir }] });
    const err = await new Firecracker(silentLogger()).start(vm).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotImplementedError);
    expect((err as Error).message).toBe(
      'firecracker has no shared filesystem (neither virtio-fs nor 9p), so sharedDirectories (kataShared) cannot work; containers under Firecracker need their rootfs as block devices, which kata-ts does not support yet',
    );
    expect(() => fake.argv()).toThrow(/never ran/);
  });
});

describeWithRealBinary('firecracker', () => new Firecracker(silentLogger()));
