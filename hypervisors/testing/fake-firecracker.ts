// Firecracker's behaviour behind its API, as far as our driver can observe it:
// configuration endpoints work before InstanceStart only, the instance state is
// "Not started" → "Running" ⇄ "Paused", SendCtrlAltDel makes the guest reboot, which
// ends the Firecracker process, and every error is 400 {"fault_message": "..."}.
import { Endpoint } from './api-schema';
import type { FakeAnswer, FakeFlavour } from './fake-vmm';
import { FIRECRACKER_API } from './firecracker-api';

type InstanceState = 'Not started' | 'Running' | 'Paused';

const PRE_BOOT_ONLY = 'The requested operation is not supported after starting the microVM.';

export function fakeFirecracker(): FakeFlavour {
  let state: InstanceState = 'Not started';
  let kernelConfigured = false;
  let vsockSocket: string | undefined;
  const error = (message: string): FakeAnswer => ({ status: 400, body: { fault_message: message } });
  const preBoot = (configure: () => void): FakeAnswer => {
    if (state !== 'Not started') return error(PRE_BOOT_ONLY);
    configure();
    return { status: 204 };
  };

  return {
    api: FIRECRACKER_API,
    flags: ['--api-sock'],
    apiSocket: (flags) => flags.get('--api-sock'),
    errorBody: (message) => ({ fault_message: message }),
    handle(endpoint: Endpoint, _params, body): FakeAnswer {
      switch (endpoint.path) {
        case '/':
          return { status: 200, body: { app_name: 'Firecracker', id: 'anonymous-instance', state, vmm_version: '1.17.0-fake' } };
        case '/boot-source':
          return preBoot(() => (kernelConfigured = true));
        case '/vsock':
          return preBoot(() => (vsockSocket = (body as { uds_path: string }).uds_path));
        case '/machine-config':
        case '/drives/{drive_id}':
        case '/network-interfaces/{iface_id}':
          return preBoot(() => undefined);
        case '/actions':
          return action((body as { action_type: string }).action_type);
        case '/vm': {
          if (state === 'Not started') return error('The microVM has not been started.');
          state = (body as { state: string }).state === 'Paused' ? 'Paused' : 'Running';
          return { status: 204 };
        }
        default:
          return error(`the fake does not model ${endpoint.path}`);
      }
    },
  };

  function action(type: string): FakeAnswer {
    if (type === 'InstanceStart') {
      if (state !== 'Not started') return error(PRE_BOOT_ONLY);
      if (!kernelConfigured) return error('Cannot start microvm without kernel configuration.');
      state = 'Running';
      return { status: 204, ...(vsockSocket ? { boot: { vsockSocket } } : {}) };
    }
    if (type === 'SendCtrlAltDel') {
      if (state === 'Not started') return error('The microVM has not been started.');
      return { status: 204, exitAfter: true };
    }
    return { status: 204 };
  }
}
