// The pod's lifecycle around its sandbox, with a fake driver and agent (no VM).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { defaultConfig } from '../config/runtime-config';
import { UnavailableError } from '../lib/errors';
import { silentLogger } from '../lib/logger';
import { Pod } from './pod';
import { fakeAgent } from './testing/fake-agent';
import { fakeDriver } from './testing/fake-driver';

describe('Pod', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-pod-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('stops a VM that is still booting when it is destroyed, and the abandoned Create fails', async () => {
    const config = defaultConfig();
    config.runtime.stateDir = path.join(dir, 'state');
    const agent = fakeAgent({ CreateSandbox: () => ({}), DestroySandbox: () => ({}), GetOOMEvent: () => new Promise(() => undefined) });
    let boot!: () => void;
    const driver = fakeDriver('virtio-serial', agent, new Promise((r) => (boot = r)));
    const pod = new Pod({ namespace: 'default', resolveConfig: () => ({ config, files: [], via: 'test' }), newHypervisor: () => driver }, { onExit: () => undefined, onOom: () => undefined }, silentLogger());
    const bundle = path.join(dir, 'bundle');
    fs.mkdirSync(path.join(bundle, 'rootfs'), { recursive: true });
    fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify({ ociVersion: '1.0.2', root: { path: 'rootfs' }, process: { args: ['sh'], cwd: '/' } }));
    try {
      const create = pod.create({ id: 'c1', bundle, rootfs: [], terminal: false, stdin: '', stdout: '', stderr: '' });
      create.catch(() => undefined);
      while (!driver.booted) await new Promise((r) => setTimeout(r, 10)); // the VMM is starting
      const destroyed = pod.destroy();
      boot();
      await destroyed;
      expect(driver.stopped).toBe(true);
      expect(agent.calls).toContain('DestroySandbox');
      expect(fs.existsSync(path.join(config.runtime.stateDir, 'default', 'c1'))).toBe(false);
      await expect(create).rejects.toThrow(UnavailableError);
    } finally {
      await agent.server.close();
    }
  });
});
