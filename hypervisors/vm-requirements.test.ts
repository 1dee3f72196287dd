import { InvalidArgumentError } from '../lib/errors';
import { vmConfigIn } from './testing/vm-fixture';
import { hybridVsock, requireKvm } from './vm-requirements';

const base = vmConfigIn('/w', 'vmm');

describe('what the REST-driven VMMs demand of a VmConfig', () => {
  it('refuses software emulation, naming the option', () => {
    expect(() => requireKvm({ ...base, accelerator: 'tcg' }, 'firecracker')).toThrow(
      new InvalidArgumentError('firecracker runs guests under KVM only: accelerator "tcg" is QEMU\'s; use accelerator "kvm" or the QEMU driver'),
    );
    expect(() => requireKvm(base, 'firecracker')).not.toThrow();
  });

  it('accepts only a hybrid vsock agent channel, saying why', () => {
    expect(hybridVsock(base, 'firecracker')).toEqual({ socketPath: '/w/vsock.sock', guestCid: 3 });
    expect(() => hybridVsock({ ...base, agentChannel: { kind: 'virtio-serial', socketPath: '/a', portName: 'p' } }, 'firecracker')).toThrow(
      'firecracker cannot use agentChannel kind "virtio-serial" (it has no virtio-serial ports); use agentChannel kind "hybrid-vsock"',
    );
    expect(() => hybridVsock({ ...base, agentChannel: { kind: 'vsock', guestCid: 3, port: 1024 } }, 'cloud-hypervisor')).toThrow(
      'cloud-hypervisor cannot use agentChannel kind "vsock" (its vsock device is not vhost-vsock); use agentChannel kind "hybrid-vsock"',
    );
  });
});
