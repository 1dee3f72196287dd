// Cloud Hypervisor's behaviour behind its API, as far as our driver can observe it:
// the VM lifecycle (Created → Running ⇄ Paused → Shutdown) with the status codes the
// OpenAPI file lists (404 before vm.create, 405 in the wrong state), cold vs hot device
// adds (204 vs 200 + PciDeviceInfo), and errors as a JSON array of messages (the
// error chain, outermost first).
import { Endpoint } from './api-schema';
import { CLOUD_HYPERVISOR_API } from './cloud-hypervisor-api';
import type { FakeAnswer, FakeFlavour } from './fake-vmm';

type VmState = 'Created' | 'Running' | 'Paused' | 'Shutdown';

interface ClhConfig {
  vsock?: { socket: string };
  serial?: { mode: string; file?: string };
  disks?: unknown[];
  net?: unknown[];
}

export function fakeCloudHypervisor(): FakeFlavour {
  let state: VmState | undefined;
  let config: ClhConfig = {};
  let hotplugged = 0;
  const error = (status: number, message: string): FakeAnswer => ({ status, body: [message] });
  const transition = (from: VmState[], to: VmState): FakeAnswer => {
    if (!state) return error(404, 'VM is not created');
    if (!from.includes(state)) return error(405, `invalid VM state transition: ${state} to ${to}`);
    state = to;
    return { status: 204 };
  };
  const addDevice = (list: 'disks' | 'net', device: unknown): FakeAnswer => {
    if (!state) return error(404, 'VM is not created');
    if (state === 'Created') {
      config[list] = [...(config[list] ?? []), device];
      return { status: 204 };
    }
    const id = (device as { id?: string }).id ?? `_${list === 'disks' ? 'disk' : 'net'}${hotplugged}`;
    return { status: 200, body: { id, bdf: `0000:00:${(0x10 + hotplugged++).toString(16)}.0` } };
  };

  return {
    api: CLOUD_HYPERVISOR_API,
    flags: ['--api-socket'],
    apiSocket: (flags) => flags.get('--api-socket')?.replace(/^path=/, ''),
    errorBody: (message) => [message],
    handle(endpoint: Endpoint, _params, body): FakeAnswer {
      switch (endpoint.path.slice('/api/v1/'.length)) {
        case 'vmm.ping':
          return { status: 200, body: { version: 'v53.0-fake', build_version: 'fake', pid: process.pid, features: [] } };
        case 'vmm.shutdown':
          return { status: 204, exitAfter: true };
        case 'vm.info':
          return state ? { status: 200, body: { config, state } } : error(404, 'VM is not created');
        case 'vm.create':
          if (state) return error(400, 'VM is already created');
          config = body as ClhConfig;
          state = 'Created';
          return { status: 204 };
        case 'vm.boot': {
          const answer = transition(['Created'], 'Running');
          if (answer.status !== 204 || !config.vsock) return answer;
          const consoleFile = config.serial?.mode === 'File' ? config.serial.file : undefined;
          return { ...answer, boot: { vsockSocket: config.vsock.socket, consoleFile } };
        }
        case 'vm.pause':
          return transition(['Running'], 'Paused');
        case 'vm.resume':
          return transition(['Paused'], 'Running');
        case 'vm.shutdown':
          return transition(['Running', 'Paused'], 'Shutdown');
        case 'vm.add-disk':
          return addDevice('disks', body);
        case 'vm.add-net':
          return addDevice('net', body);
        case 'vm.resize':
          return state ? { status: 204 } : error(404, 'VM is not created');
        default:
          return error(500, `the fake does not model ${endpoint.path}`);
      }
    },
  };
}
