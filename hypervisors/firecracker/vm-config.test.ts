import { InvalidArgumentError } from '../../lib/errors';
import { vmConfigIn } from '../testing/vm-fixture';
import { buildFirecrackerPlan } from './vm-config';

describe('Firecracker boot plan', () => {
  it("configures the pod's NICs first, then interfaces and drives added before start", () => {
    const vm = vmConfigIn('/w', 'firecracker', { network: { netnsPath: '/var/run/netns/cni-1', nics: [{ tapName: 'tap0_kata', mac: '5a:1b:2c:3d:4e:5f' }] } });
    const plan = buildFirecrackerPlan(vm, [
      { kind: 'network', id: 'extra', tapName: 'tap9' },
      { kind: 'block', id: 'disk0', hostPath: '/d', readOnly: false },
    ]);
    expect(plan.networkInterfaces).toEqual([
      { iface_id: 'pod_net0', host_dev_name: 'tap0_kata', guest_mac: '5a:1b:2c:3d:4e:5f' },
      { iface_id: 'extra', host_dev_name: 'tap9' },
    ]);
    expect(plan.drives).toEqual([{ drive_id: 'disk0', path_on_host: '/d', is_root_device: false, is_read_only: false }]);
  });

  it("tells the guest agent to listen on vsock, its only channel, after the configuration's own parameters", () => {
    expect(buildFirecrackerPlan(vmConfigIn('/w', 'firecracker'), []).bootSource.boot_args).toBe('console=ttyS0 quiet katats.agent_vsock=1');
  });

  it('refuses mergeable memory, which Firecracker cannot give KSM', () => {
    expect(() => buildFirecrackerPlan(vmConfigIn('/w', 'firecracker', { memoryMerge: true }), [])).toThrow(new InvalidArgumentError('firecracker never marks guest memory mergeable, so KSM cannot merge it; do not ask for memoryMerge'));
    expect(buildFirecrackerPlan(vmConfigIn('/w', 'firecracker', { memoryMerge: false }), []).machineConfig).toEqual({ vcpu_count: 2, mem_size_mib: 512 });
  });
});
