import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { silentLogger } from '../lib/logger';
import { guestSpec, readBundleSpec } from './spec';

describe('bundle spec', () => {
  it('rejects a config.json that is not JSON, naming the file', () => {
    const bundle = fs.mkdtempSync(path.join(os.tmpdir(), 'bundle-'));
    fs.writeFileSync(path.join(bundle, 'config.json'), 'this is not json');
    expect(() => readBundleSpec(bundle)).toThrow(`OCI spec ${bundle}/config.json is not valid JSON`);
  });

  it('rewrites the rootfs to the guest path and drops host-only parts', () => {
    const spec = {
      root: { path: 'rootfs', readonly: true },
      hooks: { prestart: [{ path: '/usr/bin/host-hook' }] },
      mounts: [
        { destination: '/proc', type: 'proc', source: 'proc' },
        { destination: '/data', type: 'bind', source: '/host/data', options: ['rbind'] },
      ],
      linux: { namespaces: [{ type: 'pid' }, { type: 'network', path: '/var/run/netns/cni-1' }] },
    };
    const out = guestSpec(spec, '/run/kata-containers/shared/c1/rootfs', silentLogger());
    expect(out.root).toEqual({ path: '/run/kata-containers/shared/c1/rootfs', readonly: true });
    expect(out.hooks).toBeUndefined();
    expect(out.mounts).toEqual([{ destination: '/proc', type: 'proc', source: 'proc' }]);
    expect(out.linux?.namespaces).toEqual([{ type: 'pid' }, { type: 'network' }]);
    expect(spec.root.path).toBe('rootfs'); // the input is not modified
  });
});
