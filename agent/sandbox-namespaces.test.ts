import { joinSandboxNamespaces } from './sandbox-namespaces';

describe('joinSandboxNamespaces', () => {
  const pids: Record<string, number> = { pod1: 42 };
  const pidOf = (id: string) => pids[id];

  it("points marked namespaces at the pause container's /proc entries and leaves the rest", () => {
    const spec = {
      annotations: { 'io.kubernetes.cri.sandbox-id': 'pod1' },
      linux: { namespaces: [{ type: 'ipc', path: '/run/kata-containers/sandbox/ns/ipc' }, { type: 'mount' }, { type: 'uts', path: '/run/kata-containers/sandbox/ns/uts' }] },
    };
    joinSandboxNamespaces('c1', spec, pidOf);
    expect(spec.linux.namespaces).toEqual([{ type: 'ipc', path: '/proc/42/ns/ipc' }, { type: 'mount' }, { type: 'uts', path: '/proc/42/ns/uts' }]);
  });

  it('refuses host paths and sandboxes that do not run here', () => {
    expect(() => joinSandboxNamespaces('c1', { linux: { namespaces: [{ type: 'ipc', path: '/proc/1/ns/ipc' }] } }, pidOf)).toThrow('namespace path /proc/1/ns/ipc is not a guest path');
    const orphan = { annotations: { 'io.kubernetes.cri.sandbox-id': 'pod2' }, linux: { namespaces: [{ type: 'ipc', path: '/run/kata-containers/sandbox/ns/ipc' }] } };
    expect(() => joinSandboxNamespaces('c1', orphan, pidOf)).toThrow('joins the ipc namespace of pod sandbox pod2, which is not running in this VM');
  });
});
