// The driver against the recorded-request fake (hypervisors/testing/): every request
// it makes is checked there against our description of the upstream OpenAPI file.
import * as fs from 'fs';
import * as path from 'path';
import { FailedPreconditionError, HypervisorError } from '../../lib/errors';
import { silentLogger } from '../../lib/logger';
import { VmmApiError } from '../http-unix';
import { connectHybridVsock } from '../hybrid-vsock';
import { fakeVmmWorkspace } from '../testing/fake-vmm-binary';
import { describeWithRealBinary } from '../testing/real-binary';
import { AGENT_VSOCK_PORT, testVmConfig } from '../testing/vm-fixture';
import { CloudHypervisor } from './cloud-hypervisor';

const MiB = 1024 * 1024;

describe('CloudHypervisor driver (recorded-request fake)', () => {
  const fakes = fakeVmmWorkspace('clh-test-');

  it('starts, pauses, resumes, hot-plugs, resizes and stops with exactly these requests', async () => {
    const fake = fakes.kit.binary({ flavour: 'cloud-hypervisor', guestPorts: [AGENT_VSOCK_PORT], consoleText: 'Linux version 6.1 (fake)\n' });
    const vm = testVmConfig(fakes.dir, fake.path, { maxVcpus: 4, maxMemoryMiB: 1024 });
    const clh = new CloudHypervisor(silentLogger());
    await clh.addDevice({ kind: 'block', id: 'image0', hostPath: '/img/base.raw', readOnly: true });
    await clh.start(vm);
    expect(clh.pid()).toEqual(expect.any(Number));

    const agent = await connectHybridVsock(path.join(vm.workDir, 'vsock.sock'), AGENT_VSOCK_PORT, 2000);
    agent.destroy();
    await clh.pause();
    expect(await clh.vmState()).toBe('Paused');
    await clh.resume();
    await clh.addDevice({ kind: 'block', id: 'disk1', hostPath: '/img/data.raw', readOnly: false });
    await clh.addDevice({ kind: 'network', id: 'eth0', tapName: 'tap0', macAddress: '02:00:00:00:00:01' });
    expect(await clh.resize({ vcpus: 3, memoryMiB: 768 })).toEqual({ vcpus: 3, memoryMiB: 768 });
    expect(await clh.resize({ vcpus: 4 })).toEqual({ vcpus: 4, memoryMiB: 768 });
    await expect(clh.resize({ memoryMiB: 1025 })).rejects.toThrow('cloud-hypervisor: cannot resize to 1025 MiB: the VM was booted with room for 1024 MiB (maxMemoryMiB)');
    expect(clh.consoleTail()).toBe('Linux version 6.1 (fake)\n');
    await clh.stop(0);
    expect(await clh.exited).toEqual({ code: 0, signal: null });
    expect(clh.pid()).toBeUndefined();
    await expect(clh.pause()).rejects.toThrow(FailedPreconditionError);

    expect(fake.argv()).toEqual(['--api-socket', `path=${vm.workDir}/clh-api.sock`]);
    const v1 = '/api/v1';
    expect(fake.requests()).toEqual([
      { method: 'GET', path: `${v1}/vmm.ping`, status: 200 },
      {
        method: 'PUT',
        path: `${v1}/vm.create`,
        status: 204,
        body: {
          payload: { kernel: vm.kernelPath, initramfs: vm.rootfs.path, cmdline: 'console=ttyS0 quiet katats.agent_vsock=1' },
          cpus: { boot_vcpus: 2, max_vcpus: 4 },
          memory: { size: 512 * MiB, hotplug_size: 512 * MiB },
          serial: { mode: 'File', file: `${vm.workDir}/console.log` },
          console: { mode: 'Off' },
          rng: { src: '/dev/urandom' },
          vsock: { cid: 3, socket: `${vm.workDir}/vsock.sock` },
          disks: [{ path: '/img/base.raw', readonly: true, id: 'image0' }],
        },
      },
      { method: 'PUT', path: `${v1}/vm.boot`, status: 204 },
      { method: 'PUT', path: `${v1}/vm.pause`, status: 204 },
      { method: 'GET', path: `${v1}/vm.info`, status: 200 },
      { method: 'PUT', path: `${v1}/vm.resume`, status: 204 },
      { method: 'PUT', path: `${v1}/vm.add-disk`, status: 200, body: { path: '/img/data.raw', readonly: false, id: 'disk1' } },
      { method: 'PUT', path: `${v1}/vm.add-net`, status: 200, body: { tap: 'tap0', mac: '02:00:00:00:00:01', id: 'eth0' } },
      { method: 'PUT', path: `${v1}/vm.resize`, status: 204, body: { desired_vcpus: 3, desired_ram: 768 * MiB } },
      { method: 'PUT', path: `${v1}/vm.resize`, status: 204, body: { desired_vcpus: 4 } },
      { method: 'PUT', path: `${v1}/vm.shutdown`, status: 204 },
      { method: 'PUT', path: `${v1}/vmm.shutdown`, status: 204 },
    ]);
  });

  it('surfaces a request the VMM rejects (400 from the schema check) with endpoint, status and message', async () => {
    const fake = fakes.kit.binary({ flavour: 'cloud-hypervisor' });
    const clh = new CloudHypervisor(silentLogger());
    const err = await clh.start(testVmConfig(fakes.dir, fake.path, { vcpus: 0 })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VmmApiError);
    expect((err as Error).message).toBe(
      'cloud-hypervisor API PUT /api/v1/vm.create failed with HTTP 400: body.cpus.boot_vcpus: must be at least 1, got 0; body.cpus.max_vcpus: must be at least 1, got 0',
    );
    expect(await clh.exited).toEqual({ code: null, signal: 'SIGKILL' });
  });

  it('reports a VMM that dies during start-up with its stderr', async () => {
    const fake = fakes.kit.binary({
      flavour: 'cloud-hypervisor',
      crashOn: { method: 'PUT', path: '/api/v1/vm.boot', exitCode: 1, stderr: 'Error booting VM: failed to create the vCPU threads\n' },
    });
    const clh = new CloudHypervisor(silentLogger());
    await expect(clh.start(testVmConfig(fakes.dir, fake.path))).rejects.toThrow(
      'cloud-hypervisor exited during vm.boot (exit code 1): Error booting VM: failed to create the vCPU threads',
    );
    expect(fake.requests().map((r) => `${r.path} ${r.status}`)).toEqual(['/api/v1/vmm.ping 200', '/api/v1/vm.create 204', '/api/v1/vm.boot crashed']);
  });

  it('serves sharedDirectories through one virtiofsd each, on shared guest memory', async () => {
    const fake = fakes.kit.binary({ flavour: 'cloud-hypervisor' });
    const virtiofsd = fakes.kit.binary({ flavour: 'virtiofsd' });
    const shared = fs.mkdtempSync(path.join(fakes.dir, 'shared-'));
    const vm = testVmConfig(fakes.dir, fake.path, { sharedDirectories: [{ tag: 'kataShared', hostPath: shared }] });
    const clh = new CloudHypervisor(silentLogger(), { virtiofsdPath: virtiofsd.path });
    await clh.start(vm);
    await clh.stop(0);

    const socket = `${vm.workDir}/virtiofsd-0.sock`;
    // Confined (namespaces, seccomp, no mknod), as hypervisors/virtiofsd.ts says why.
    expect(virtiofsd.argv()).toEqual([`--socket-path=${socket}`, `--shared-dir=${shared}`, '--cache=never', '--sandbox=namespace', '--seccomp=kill', '--modcaps=-mknod:-setfcap', '--announce-submounts', '--log-level=error']);
    // Recorded for `delete` after a crash: pid and start time.
    expect(fs.readFileSync(`${vm.workDir}/virtiofsd-0.pid`, 'utf8')).toMatch(/^\d+ \d+\n$/);
    const create = fake.requests().find((r) => r.path === '/api/v1/vm.create')?.body as Record<string, unknown>;
    expect(create.fs).toEqual([{ tag: 'kataShared', socket, num_queues: 1, queue_size: 1024 }]);
    expect(create.memory).toEqual({ size: 512 * MiB, shared: true });
    expect(fs.existsSync(socket)).toBe(false); // the daemon was stopped (the fake removes its socket on exit)
  });

  // Joining a network namespace (even our own) takes CAP_SYS_ADMIN.
  const asRoot = process.getuid?.() === 0;
  (asRoot ? it : it.skip)(`runs the VMM inside the pod's network namespace${asRoot ? '' : ' (SKIPPED: needs root for nsenter)'}`, async () => {
    const fake = fakes.kit.binary({ flavour: 'cloud-hypervisor' });
    const network = { netnsPath: '/proc/self/ns/net', nics: [{ tapName: 'tap0_kata', mac: '5a:1b:2c:3d:4e:5f' }] };
    const vm = testVmConfig(fakes.dir, fake.path, { network });
    const clh = new CloudHypervisor(silentLogger());
    await clh.start(vm);
    await clh.stop(0);
    expect(fake.argv()).toEqual(['--api-socket', `path=${vm.workDir}/clh-api.sock`]);
    const create = fake.requests().find((r) => r.path === '/api/v1/vm.create')?.body as Record<string, unknown>;
    expect(create.net).toEqual([{ tap: 'tap0_kata', mac: '5a:1b:2c:3d:4e:5f', id: 'pod_net0' }]);
  });

  it('reports a network namespace the VMM cannot join with nsenter\'s words', async () => {
    const fake = fakes.kit.binary({ flavour: 'cloud-hypervisor' });
    const vm = testVmConfig(fakes.dir, fake.path, { network: { netnsPath: '/nonexistent/netns', nics: [] } });
    await expect(new CloudHypervisor(silentLogger()).start(vm)).rejects.toThrow(/^cloud-hypervisor exited during start-up \(exit code 1\): nsenter: .*\/nonexistent\/netns/);
  });

  it('refuses options Cloud Hypervisor cannot honour before spawning anything', async () => {
    const fake = fakes.kit.binary({ flavour: 'cloud-hypervisor' });
    const vm = testVmConfig(fakes.dir, fake.path, { agentChannel: { kind: 'virtio-serial', socketPath: '/x/agent.sock', portName: 'agent.channel.0' } });
    await expect(new CloudHypervisor(silentLogger()).start(vm)).rejects.toThrow('cloud-hypervisor cannot use agentChannel kind "virtio-serial" (it has no virtio-serial ports); use agentChannel kind "hybrid-vsock"');
    expect(fake.requests()).toEqual([]);
    expect(() => fake.argv()).toThrow(/never ran/);
  });

  it('names the binary it cannot find', async () => {
    const vm = testVmConfig(fakes.dir, 'no-such-cloud-hypervisor');
    const err = await new CloudHypervisor(silentLogger()).start(vm).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HypervisorError);
    expect((err as Error).message).toMatch(/^cloud-hypervisor binary 'no-such-cloud-hypervisor' is not an executable file on PATH/);
  });
});

describeWithRealBinary('cloud-hypervisor', () => new CloudHypervisor(silentLogger()));
