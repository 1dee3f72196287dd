import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { silentLogger } from '../lib/logger';
import { guestSpec, readBundleSpec } from './spec';

describe('bundle spec', () => {
  it('rejects a config.json that is not JSON, naming the file', () => {
    const bundle = fs.mkdtempSync(path.join(os.tmpdir(), 'bundle-'));
    try {
      fs.writeFileSync(path.join(bundle, 'config.json'), 'this is not json');
      expect(() => readBundleSpec(bundle)).toThrow(`OCI spec ${bundle}/config.json is not valid JSON`);
    } finally {
      fs.rmSync(bundle, { recursive: true, force: true });
    }
  });

  it('rewrites the rootfs and mounts to guest paths and drops host-only parts', () => {
    const spec = {
      root: { path: 'rootfs', readonly: true },
      hooks: { prestart: [{ path: '/usr/bin/host-hook' }] },
      process: { args: ['sh'], apparmorProfile: 'cri-containerd.apparmor.d' },
      mounts: [{ destination: '/data', type: 'bind', source: '/host/data', options: ['rbind'] }],
      linux: { namespaces: [{ type: 'pid' }, { type: 'network', path: '/var/run/netns/cni-1' }, { type: 'ipc', path: '/proc/77/ns/ipc' }], cgroupsPath: 'kubepods-besteffort-pod1.slice:cri-containerd:c1' },
    };
    const guestMounts = [{ destination: '/data', type: 'bind', source: '/run/kata-containers/shared/c1/mounts/0', options: ['rbind'] }];
    const out = guestSpec(spec, { containerId: 'c1', rootfs: '/run/kata-containers/shared/c1/rootfs', mounts: guestMounts }, silentLogger());
    expect(out.root).toEqual({ path: '/run/kata-containers/shared/c1/rootfs', readonly: true });
    expect(out.hooks).toBeUndefined();
    expect(out.process).toEqual({ args: ['sh'] });
    expect(out.mounts).toEqual(guestMounts);
    // The pod netns is the guest's own; other host namespace paths mean "the pause container's".
    expect(out.linux?.namespaces).toEqual([{ type: 'pid' }, { type: 'ipc', path: '/run/kata-containers/sandbox/ns/ipc' }]);
    expect(out.linux?.cgroupsPath).toBe('/kubepods-besteffort-pod1.slice/cri-containerd-c1');
    expect(spec.root.path).toBe('rootfs'); // the input is not modified
  });

  it('gives a container without a cgroup one, so stats and OOM events work', () => {
    const out = guestSpec({ linux: {} }, { containerId: 'c2', rootfs: '/r' }, silentLogger());
    expect(out.linux?.cgroupsPath).toBe('/katats/c2');
  });

  it("presents a runtime-spec version the guest's crun refuses (containerd 2.x writes 1.2.x) as one it takes", () => {
    const versionFor = (ociVersion: string) => guestSpec({ ociVersion }, { containerId: 'c3', rootfs: '/r' }, silentLogger()).ociVersion;
    // crun 1.8 takes a version only if it contains "1.0".
    for (const refused of ['1.2.1', '1.1.1', '1.1', '1.10.0', '2.0.0']) expect(versionFor(refused)).toBe('1.0.2');
    // What it takes stays as written (containerd 1.6 and 1.7).
    for (const taken of ['1.0.2-dev', '1.1.0', '1.0']) expect(versionFor(taken)).toBe(taken);
  });
});
