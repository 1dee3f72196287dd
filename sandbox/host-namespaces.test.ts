import { FailedPreconditionError } from '../lib/errors';
import { refuseWhatAVmCannotMean } from './host-namespaces';
import type { OciSpec } from './spec';

// The shapes containerd 1.6's CRI plugin writes (see host-namespaces.ts): namespace
// entries of a kubelet-default pod's pause container, and of its app containers.
const NETNS = '/run/containerd/io.containerd.grpc.v1.cri/netns/cni-0b9f';
const POD_NAMESPACES = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'network', path: NETNS }];
const SANDBOX_ANNOTATIONS = {
  'io.kubernetes.cri.container-type': 'sandbox',
  'io.kubernetes.cri.sandbox-id': 'a'.repeat(64),
  'io.kubernetes.cri.sandbox-name': 'web-0',
  'io.kubernetes.cri.sandbox-namespace': 'shop',
};
const CONTAINER_ANNOTATIONS = { ...SANDBOX_ANNOTATIONS, 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.container-name': 'nginx' };

function pause(without: string[] = []): OciSpec {
  return { annotations: SANDBOX_ANNOTATIONS, linux: { namespaces: POD_NAMESPACES.filter((ns) => !without.includes(ns.type)) } };
}

function app(mounts: OciSpec['mounts'] = [], linux: Record<string, unknown> = {}): OciSpec {
  return {
    annotations: CONTAINER_ANNOTATIONS,
    mounts: [{ destination: '/etc/hosts', type: 'bind', source: '/var/lib/containerd/hosts', options: ['rbind', 'rprivate', 'rw'] }, ...mounts],
    linux: { namespaces: [{ type: 'pid' }, { type: 'network', path: '/proc/42/ns/net' }, { type: 'ipc', path: '/proc/42/ns/ipc' }, { type: 'uts', path: '/proc/42/ns/uts' }, { type: 'mount' }], ...linux },
  };
}

function refusal(spec: OciSpec): FailedPreconditionError {
  try {
    refuseWhatAVmCannotMean(spec);
  } catch (err) {
    expect(err).toBeInstanceOf(FailedPreconditionError);
    return err as FailedPreconditionError;
  }
  throw new Error('expected a refusal');
}

describe('refuseWhatAVmCannotMean', () => {
  it("accepts a kubelet-default pod's pause container and app containers (None and HostToContainer mounts too)", () => {
    expect(() => refuseWhatAVmCannotMean(pause())).not.toThrow();
    expect(() => refuseWhatAVmCannotMean(app())).not.toThrow();
    const rslave = { destination: '/data', type: 'bind', source: '/mnt/data', options: ['rbind', 'rslave', 'ro'] };
    expect(() => refuseWhatAVmCannotMean(app([rslave], { rootfsPropagation: 'rslave' }))).not.toThrow();
  });

  it('refuses hostNetwork, hostPID and hostIPC on the pause container, naming the field and why', () => {
    expect(refusal(pause(['network', 'uts'])).message).toBe(
      "pod shop/web-0 cannot run in a kata VM: hostNetwork (CRI namespace_options.network = NODE) is not supported: the pod's VM has its own kernel and network stack and cannot join the node's network namespace; its interfaces, addresses and ports would be the guest's, not the node's",
    );
    expect(refusal(pause(['pid'])).message).toMatch(/^pod shop\/web-0 cannot run in a kata VM: hostPID \(CRI namespace_options.pid = NODE\) is not supported: the pod's processes run on the VM's kernel/);
    expect(refusal(pause(['ipc'])).message).toMatch(/hostIPC \(CRI namespace_options.ipc = NODE\) is not supported: .*\/dev\/shm/);
    // All of them at once, in one message.
    const all = refusal(pause(['network', 'uts', 'pid', 'ipc'])).message;
    expect(all.match(/is not supported/g)).toHaveLength(3);
  });

  it('refuses a Bidirectional (rshared) mount, naming the mount', () => {
    const shared = { destination: '/var/lib/kubelet/pods', type: 'bind', source: '/var/lib/kubelet/pods', options: ['rbind', 'rshared', 'rw'] };
    expect(refusal(app([shared], { rootfsPropagation: 'rshared' })).message).toBe(
      'container nginx of pod shop/web-0 cannot run in a kata VM: mount /var/lib/kubelet/pods (host path /var/lib/kubelet/pods) asks for Bidirectional mount propagation (rshared), which is not supported: ' +
        'the volume reaches the VM over a file-sharing protocol, so mounts made inside the VM can never propagate back to the host; use HostToContainer or None',
    );
    expect(refusal(app([], { rootfsPropagation: 'shared' })).message).toContain('linux.rootfsPropagation "shared" is not supported');
  });

  it('leaves specs that are not CRI containers alone (ctr run --net-host, an init sharing the guest PID namespace)', () => {
    expect(() => refuseWhatAVmCannotMean({ linux: { namespaces: [{ type: 'mount' }] } })).not.toThrow();
    expect(() => refuseWhatAVmCannotMean({ annotations: { other: 'x' }, mounts: [{ destination: '/m', source: '/m', options: ['rshared'] }] })).not.toThrow();
    expect(() => refuseWhatAVmCannotMean({})).not.toThrow();
  });
});
