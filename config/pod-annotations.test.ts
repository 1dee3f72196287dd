import * as os from 'os';
import { InvalidArgumentError } from '../lib/errors';
import { applyConfigAnnotations, overrideKernelParams } from './pod-annotations';
import { parseConfig, RuntimeConfig } from './runtime-config';

const SOURCE = '/etc/kata-containers/configuration.toml';
const key = (name: string): string => `io.katacontainers.config.hypervisor.${name}`;
const hostMiB = Math.floor(os.totalmem() / (1024 * 1024));

/** A configuration as a file would give it, enabling `enabled`. */
function configWith(enabled: string[], hypervisor: Record<string, unknown> = {}): RuntimeConfig {
  return parseConfig({ hypervisor: { enableAnnotations: enabled, ...hypervisor } }, SOURCE);
}

function apply(config: RuntimeConfig, annotations: Record<string, string>): RuntimeConfig {
  applyConfigAnnotations(config, annotations, SOURCE);
  return config;
}

describe('per-pod overrides through io.katacontainers.config.hypervisor.* annotations', () => {
  it.each(['default_memory', 'default_vcpus', 'default_maxmemory', 'kernel_params', 'enable_template'])('refuses %s while enable_annotations does not list it', (name) => {
    const config = configWith(['debug_.*', 'default_memory_slots']);
    expect(() => apply(config, { [key(name)]: '1' })).toThrow(InvalidArgumentError);
    expect(() => apply(config, { [key(name)]: '1' })).toThrow(`annotation ${key(name)} is not enabled: no entry of enable_annotations in [hypervisor.qemu] of ${SOURCE} matches "${name}"`);
  });

  it('sets the boot memory, vCPUs and the memory maximum where enabled', () => {
    const config = apply(configWith(['default_.*'], { maxVcpus: 4 }), { [key('default_memory')]: '1536', [key('default_vcpus')]: '2', [key('default_maxmemory')]: '3072' });
    expect(config.hypervisor).toMatchObject({ memoryMiB: 1536, vcpus: 2, maxMemoryMiB: 3072 });
  });

  it('checks the combination, whatever the order of the annotations', () => {
    // The file's maximum (2048) is below the new boot memory; the pod's new maximum makes room.
    const both = { [key('default_memory')]: '3072', [key('default_maxmemory')]: '4096' };
    const reversed = { [key('default_maxmemory')]: '4096', [key('default_memory')]: '3072' };
    expect(apply(configWith(['default_.*'], { maxMemoryMiB: 2048 }), both).hypervisor).toMatchObject({ memoryMiB: 3072, maxMemoryMiB: 4096 });
    expect(apply(configWith(['default_.*'], { maxMemoryMiB: 2048 }), reversed).hypervisor).toMatchObject({ memoryMiB: 3072, maxMemoryMiB: 4096 });
  });

  it.each<[Record<string, string>, string]>([
    // the file's value rules, naming the annotation
    [{ default_memory: 'lots' }, `annotation ${key('default_memory')}: must be an integer of at least 128, got "lots"`],
    [{ default_memory: '64' }, `annotation ${key('default_memory')}: must be an integer of at least 128, got "64"`],
    [{ default_vcpus: '0' }, `annotation ${key('default_vcpus')}: must be an integer of at least 1, got "0"`],
    [{ default_maxmemory: '-1' }, `annotation ${key('default_maxmemory')}: must be a non-negative integer, got "-1"`],
    [{ default_maxmemory: '512' }, `annotation ${key('default_maxmemory')}: must be 0 (half the host's memory) or at least the boot memory (1024 MiB)`],
    [{ kernel_params: 'quiet console=\u0000' }, `annotation ${key('kernel_params')}: must not contain control characters`],
    // never beyond the VM's maximum, nor a maximum beyond the host
    [{ default_memory: '8192' }, `annotation ${key('default_memory')}: 8192 MiB is more than the VM's maximum (default_maxmemory: 4096 MiB)`],
    [{ default_memory: '4096', default_maxmemory: '2048' }, `annotation ${key('default_memory')}: 4096 MiB is more than the VM's maximum (default_maxmemory: 2048 MiB)`],
    [{ default_maxmemory: String(hostMiB + 1) }, `annotation ${key('default_maxmemory')}: ${hostMiB + 1} MiB is more than the host's memory (${hostMiB} MiB)`],
    // the [factory] rule of the file: no VM templates
    [{ enable_template: 'true' }, `annotation ${key('enable_template')}: true cannot be honoured: kata-ts boots every VM from scratch; it has no VM templates (accepted: false)`],
    [{ enable_template: 'yes' }, `annotation ${key('enable_template')}: must be "true" or "false", got "yes"`],
  ])('refuses %j with the rule the file follows', (values, message) => {
    const config = configWith(['.*'], { maxMemoryMiB: 4096 });
    const annotations = Object.fromEntries(Object.entries(values).map(([name, value]) => [key(name), value]));
    expect(() => apply(config, annotations)).toThrow(InvalidArgumentError);
    expect(() => apply(config, annotations)).toThrow(message);
  });

  it('refuses kernel parameters longer than a file may set', () => {
    const config = configWith(['kernel_params'], { kernelParams: ['quiet'] });
    // With the file's "quiet": 5 + 1 + 1531 bytes.
    expect(() => apply(config, { [key('kernel_params')]: 'x'.repeat(1531) })).toThrow(`annotation ${key('kernel_params')}: must be at most 1536 bytes together (the guest's command line holds 2048, and kata-ts adds its own), got 1537`);
    expect(apply(config, { [key('kernel_params')]: 'x'.repeat(1530) }).hypervisor.kernelParams).toHaveLength(2);
  });

  it('accepts enable_template = "false": it changes nothing', () => {
    const config = configWith(['enable_template']);
    const before = JSON.stringify(config);
    expect(JSON.stringify(apply(config, { [key('enable_template')]: 'false' }))).toBe(before);
  });

  it("adds kernel parameters, each replacing the configuration's of the same name (Kata's rule)", () => {
    const config = configWith(['kernel_params'], { kernelParams: ['quiet', 'loglevel=3', 'cgroup_no_v1=all'] });
    expect(apply(config, { [key('kernel_params')]: ' loglevel=7  katats.pod=a  loglevel=8 ' }).hypervisor.kernelParams).toEqual(['quiet', 'cgroup_no_v1=all', 'katats.pod=a', 'loglevel=8']);
    expect(overrideKernelParams(['a=1', 'b'], ['b', 'c=2'])).toEqual(['a=1', 'b', 'c=2']);
  });

  it('leaves other annotations alone and refuses non-hypervisor keys', () => {
    const config = configWith(['.*']);
    expect(apply(config, { 'io.kubernetes.cri.sandbox-id': 'x', 'io.katacontainers.pkg.oci.bundle_path': '/b' }).hypervisor.memoryMiB).toBe(1024);
    expect(() => apply(config, { 'io.katacontainers.config.agent.debug_console_enabled': 'true' })).toThrow('is not enabled: only hypervisor keys can be');
  });
});
