import { InvalidArgumentError, NotImplementedError } from '../lib/errors';
import { vmConfigIn } from './testing/vm-fixture';
import { buildClhVmConfig } from './cloud-hypervisor/vm-config';
import { buildFirecrackerPlan } from './firecracker/vm-config';
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

  it('refuses a debug console, which needs a virtio-serial port, in both VMMs', () => {
    const withConsole = { ...base, debugConsole: { socketPath: '/w/debug-console.sock', portName: 'console.debug.0' } };
    expect(() => buildFirecrackerPlan(withConsole, [])).toThrow(
      new NotImplementedError('firecracker has no virtio-serial port for the debug console; kata-ts offers it with QEMU only: set [agent.kata] debug_console_enabled = false'),
    );
    expect(() => buildClhVmConfig(withConsole, {}, [])).toThrow('cloud-hypervisor has no virtio-serial port for the debug console');
    expect(() => buildFirecrackerPlan(base, [])).not.toThrow();
  });
});
