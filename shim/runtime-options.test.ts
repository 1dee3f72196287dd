import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ConfigHints } from '../config/config-location';
import { defaultConfig, RuntimeConfig } from '../config/runtime-config';
import { HypervisorError, InvalidArgumentError } from '../lib/errors';
import { silentLogger } from '../lib/logger';
import { asReceived } from '../lib/protos';
import type { containerd } from '../lib/proto-types';
import { Hypervisor } from '../hypervisors/hypervisor';
import { Pod } from '../sandbox/pod';
import { configPathFromOptions } from './runtime-options';
import { TaskService } from './task-service';

/** runtimeoptions.v1.Options{type_url=1, config_path=2} as containerd's gogo/protobuf writes it. */
function containerdOptions(configPath: string): Buffer {
  const field = (no: number, text: string): Buffer => Buffer.concat([Buffer.from([(no << 3) | 2, Buffer.byteLength(text)]), Buffer.from(text)]);
  return Buffer.concat([field(1, 'io.containerd.kata.v2.config'), field(2, configPath)]);
}

describe('runtime options from containerd', () => {
  it('reads ConfigPath from runtimeoptions.v1.Options, with or without a type URL host', () => {
    const value = containerdOptions('/etc/kata-containers/pod.toml');
    expect(configPathFromOptions({ type_url: 'runtimeoptions.v1.Options', value })).toBe('/etc/kata-containers/pod.toml');
    expect(configPathFromOptions({ type_url: 'type.googleapis.com/runtimeoptions.v1.Options', value })).toBe('/etc/kata-containers/pod.toml');
  });

  it('finds nothing in absent, empty or foreign options', () => {
    expect(configPathFromOptions(undefined)).toBeUndefined();
    expect(configPathFromOptions(null)).toBeUndefined();
    expect(configPathFromOptions({ type_url: '', value: Buffer.alloc(0) })).toBeUndefined();
    expect(configPathFromOptions({ type_url: 'runtimeoptions.v1.Options', value: Buffer.alloc(0) })).toBeUndefined();
    // Another runtime's options (runc's) are not ours to read, whatever their bytes.
    expect(configPathFromOptions({ type_url: 'containerd.runc.v1.Options', value: containerdOptions('/x') })).toBeUndefined();
  });

  it('refuses options that do not decode', () => {
    expect(() => configPathFromOptions({ type_url: 'runtimeoptions.v1.Options', value: Buffer.from([0x0f]) })).toThrow(InvalidArgumentError);
  });

  describe('reaching the configuration through Create', () => {
    let dir: string;
    let bundle: string;
    const hints: ConfigHints[] = [];
    const configs: RuntimeConfig[] = [];

    beforeEach(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rtopts-'));
      bundle = path.join(dir, 'bundle');
      fs.mkdirSync(path.join(bundle, 'rootfs'), { recursive: true });
      fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify({ root: { path: 'rootfs' }, annotations: { 'io.katacontainers.config_path': '/etc/kata-ts/x.toml' } }));
      hints.length = 0;
      configs.length = 0;
    });
    afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

    function service(): TaskService {
      const config = defaultConfig('clh');
      config.runtime.stateDir = path.join(dir, 'vm');
      const pod = new Pod(
        {
          namespace: 'default',
          resolveConfig: (h) => {
            hints.push(h);
            return { config, files: ['/etc/kata-containers/pod.toml'], via: 'test' };
          },
          newHypervisor: (c) => {
            configs.push(c);
            return failingHypervisor();
          },
        },
        { onExit: () => undefined, onOom: () => undefined },
        silentLogger(),
      );
      return new TaskService({ pod, events: { publish: () => undefined, flush: async () => undefined, close: async () => undefined }, logger: silentLogger(), shutdown: async () => undefined });
    }

    it('hands the options and the spec annotations to the configuration search, and the result to the driver', async () => {
      const create = service().handlers().Create;
      const request = asReceived<containerd.task.v2.ICreateTaskRequest>('containerd.task.v2.CreateTaskRequest', { id: 'c1', bundle, rootfs: [], options: { type_url: 'runtimeoptions.v1.Options', value: containerdOptions('/etc/kata-containers/pod.toml') } });
      await expect(create(request)).rejects.toThrow('no VM in this test');
      expect(hints).toEqual([{ runtimeOptionsPath: '/etc/kata-containers/pod.toml', annotations: { 'io.katacontainers.config_path': '/etc/kata-ts/x.toml' } }]);
      expect(configs.map((c) => c.hypervisor.kind)).toEqual(['clh']);
      // Noted for a later `delete`, which gets no runtime options.
      expect(fs.readFileSync(path.join(bundle, 'kata-ts.config-path'), 'utf8').trim()).toBe('/etc/kata-containers/pod.toml');
      // The sandbox did not start, so the next Create reads the configuration again.
      await expect(create(request)).rejects.toThrow('no VM in this test');
      expect(hints).toHaveLength(2);
    });
  });
});

function failingHypervisor(): Hypervisor {
  return {
    name: 'none',
    agentChannelKind: 'virtio-serial',
    exited: new Promise(() => undefined),
    start: async () => {
      throw new HypervisorError('no VM in this test');
    },
    stop: async () => undefined,
    pid: () => undefined,
    consoleTail: () => '',
  };
}
