// The fakes answer the way the real VMMs do when a driver gets the order wrong, and
// refuse command lines the real binaries would refuse.
import * as path from 'path';
import { silentLogger } from '../../lib/logger';
import { CloudHypervisorApi } from '../cloud-hypervisor/api';
import { FirecrackerApi } from '../firecracker/api';
import { VmmProcess } from '../vmm-process';
import { fakeVmmWorkspace } from './fake-vmm-binary';

describe('fake VMMs', () => {
  const fakes = fakeVmmWorkspace('fake-vmm-');
  const processes: VmmProcess[] = [];
  afterEach(async () => {
    for (const p of processes.splice(0)) {
      p.signal('SIGKILL');
      await p.exited;
    }
  });

  const run = (flavour: 'cloud-hypervisor' | 'firecracker', args: string[]): VmmProcess => {
    const vmm = VmmProcess.spawn({ name: flavour, binaryPath: fakes.kit.binary({ flavour }).path, args, logger: silentLogger() });
    processes.push(vmm);
    return vmm;
  };

  it('Cloud Hypervisor: 404 before vm.create, 405 in the wrong state, errors as a message array', async () => {
    const socket = path.join(fakes.dir, 'clh.sock');
    const api = new CloudHypervisorApi(socket);
    await run('cloud-hypervisor', ['--api-socket', socket]).waitForApi(() => api.ping(), 5000);
    await expect(api.bootVm()).rejects.toThrow('cloud-hypervisor API PUT /api/v1/vm.boot failed with HTTP 404: VM is not created');
    await api.createVm({
      payload: { kernel: '/k', initramfs: '/i', cmdline: '' },
      cpus: { boot_vcpus: 1, max_vcpus: 1 },
      memory: { size: 1 << 28 },
      serial: { mode: 'Null' },
      console: { mode: 'Off' },
      rng: { src: '/dev/urandom' },
      vsock: { cid: 3, socket: path.join(fakes.dir, 'clh-vsock.sock') },
    });
    await expect(api.resumeVm()).rejects.toThrow('HTTP 405: invalid VM state transition: Created to Running');
    expect(await api.addDisk({ path: '/d', readonly: true, id: 'd0' })).toBeUndefined(); // cold add: 204
    await api.bootVm();
    expect(await api.addDisk({ path: '/e', readonly: true, id: 'd1' })).toEqual({ id: 'd1', bdf: expect.stringMatching(/^0000:00:/) });
    expect((await api.info()).config.disks).toEqual([{ path: '/d', readonly: true, id: 'd0' }]);
  });

  it('Firecracker: configuration is pre-boot only, and InstanceStart needs a kernel', async () => {
    const socket = path.join(fakes.dir, 'fc.sock');
    const api = new FirecrackerApi(socket);
    await run('firecracker', ['--api-sock', socket]).waitForApi(() => api.describe(), 5000);
    await expect(api.instanceStart()).rejects.toThrow('firecracker API PUT /actions failed with HTTP 400: Cannot start microvm without kernel configuration.');
    await expect(api.setVmState('Paused')).rejects.toThrow('HTTP 400: The microVM has not been started.');
    await api.putBootSource({ kernel_image_path: '/k', initrd_path: '/i', boot_args: '' });
    await api.instanceStart();
    expect((await api.describe()).state).toBe('Running');
    await expect(api.putMachineConfig({ vcpu_count: 1, mem_size_mib: 128 })).rejects.toThrow('HTTP 400: The requested operation is not supported after starting the microVM.');
  });

  it('refuse flags the real binaries do not have', async () => {
    const vmm = run('firecracker', ['--api-socket', path.join(fakes.dir, 'x.sock')]);
    await expect(vmm.waitForApi(() => new FirecrackerApi(path.join(fakes.dir, 'x.sock')).describe(), 5000)).rejects.toThrow(
      "firecracker exited during start-up (exit code 2): error: unexpected argument '--api-socket' found",
    );
  });
});
