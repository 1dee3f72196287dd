import * as os from 'os';
import { InvalidArgumentError } from '../lib/errors';
import { annotationKernelParamRefusal, applyConfigAnnotations, overrideKernelParams, POD_KERNEL_PARAMS } from './pod-annotations';
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
    // Said on the configuration, with the settings as configured (whose VM a template of the configuration's is).
    expect(config.podOverrides?.annotations).toEqual([key('default_maxmemory'), key('default_memory'), key('default_vcpus')]);
    expect(config.podOverrides?.asConfigured).toEqual(configWith(['default_.*'], { maxVcpus: 4 }).hypervisor);
    expect(apply(configWith(['default_.*']), {}).podOverrides).toBeUndefined();
    expect(apply(configWith(['enable_template'], {}), { [key('enable_template')]: 'false' }).podOverrides).toBeUndefined();
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
    [{ kernel_params: 'nmi_watchdog=0 loglevel=\u0001' }, `annotation ${key('kernel_params')}: kernel parameter "loglevel=\\u0001" is refused: only printable ASCII`],
    // never beyond the VM's maximum, nor a maximum beyond the host
    [{ default_memory: '8192' }, `annotation ${key('default_memory')}: 8192 MiB is more than the VM's maximum (default_maxmemory: 4096 MiB)`],
    [{ default_memory: '4096', default_maxmemory: '2048' }, `annotation ${key('default_memory')}: 4096 MiB is more than the VM's maximum (default_maxmemory: 2048 MiB)`],
    [{ default_maxmemory: String(hostMiB + 1) }, `annotation ${key('default_maxmemory')}: ${hostMiB + 1} MiB is more than the host's memory (${hostMiB} MiB)`],
    // a pod may turn VM templates off, never on
    [{ enable_template: 'true' }, `annotation ${key('enable_template')}: true cannot be honoured: a pod may only turn VM templates off; set [factory] enable_template in the configuration to use them`],
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
    const long = (n: number): string => `loglevel=${'7'.repeat(n - 'loglevel='.length)}`;
    expect(() => apply(config, { [key('kernel_params')]: long(1531) })).toThrow(`annotation ${key('kernel_params')}: must be at most 1536 bytes together (the guest's command line holds 2048, and kata-ts adds its own), got 1537`);
    expect(apply(config, { [key('kernel_params')]: long(1530) }).hypervisor.kernelParams).toHaveLength(2);
  });

  it('accepts enable_template = "false": it changes nothing where templates are off', () => {
    const config = configWith(['enable_template']);
    const before = JSON.stringify(config);
    expect(JSON.stringify(apply(config, { [key('enable_template')]: 'false' }))).toBe(before);
  });

  it('lets a pod turn VM templates off where the configuration has them on, and keep them on', () => {
    const on = configWith(['enable_template']);
    on.factory.enableTemplate = true;
    expect(apply(structuredClone(on), { [key('enable_template')]: 'true' }).factory.enableTemplate).toBe(true);
    expect(apply(structuredClone(on), { [key('enable_template')]: 'false' }).factory.enableTemplate).toBe(false);
  });

  it("adds kernel parameters, each replacing the configuration's of the same name (Kata's rule)", () => {
    const config = configWith(['kernel_params'], { kernelParams: ['quiet', 'loglevel=3', 'cgroup_no_v1=all', 'transparent-hugepage=always'] });
    expect(apply(config, { [key('kernel_params')]: ' loglevel=7  nmi_watchdog=0  loglevel=8 transparent_hugepage=never' }).hypervisor.kernelParams).toEqual(['quiet', 'cgroup_no_v1=all', 'nmi_watchdog=0', 'loglevel=8', 'transparent_hugepage=never']);
    // The kernel takes '-' for '_' in names: so does the replacing.
    expect(overrideKernelParams(['a=1', 'b', 'x_y=1'], ['b', 'c=2', 'x-y=2'])).toEqual(['a=1', 'b', 'c=2', 'x-y=2']);
  });

  const notAllowed = `a pod may set only ${POD_KERNEL_PARAMS.join(', ')} (the rest belong to the runtime and its administrator)`;

  it.each<[string, string]>([
    // what runs as init, and the root filesystem it runs from
    ...['init=/usr/bin/node', 'rdinit=/bin/sh', 'root=/dev/vda', 'rootfstype=tmpfs', 'rootflags=rw', 'rootwait', 'ro', 'rw', 'noinitrd', 'initrdmem=0x1,0x2'].map((p): [string, string] => [p, p]),
    // the console, panic and reboot the runtime relies on
    ...['console=tty0', 'earlycon=uart,io,0x3f8', 'earlyprintk=ttyS0', 'panic=0', 'reboot=k', '8250.nr_uarts=0'].map((p): [string, string] => [p, p]),
    // kata-ts's own, sysctls in either spelling, hardening and isolation switches
    ...['katats.smoke=1', 'sysctl.kernel.modules_disabled=0', 'sysctl/kernel/core_pattern=|/proc/%P/root/x', 'hung_task_panic=1', 'mitigations=off', 'pti=off', 'spectre_v2=off', 'nokaslr', 'cgroup_disable=memory', 'lockdown=none'].map((p): [string, string] => [p, p]),
    // everything after `--` goes to init; `-x` is an argument of init
    ['loglevel=7 -- -e code', '--'],
    ['--inspect', '--inspect'],
    // an unknown NAME=value is an environment variable of init and the agent
    ['NODE_OPTIONS=--import=data:text/javascript,1', 'NODE_OPTIONS=--import=data:text/javascript,1'],
  ])('refuses %j: not a parameter a pod may set', (value, param) => {
    const config = configWith(['kernel_params']);
    expect(() => apply(config, { [key('kernel_params')]: `loglevel=7 ${value}` })).toThrow(
      new InvalidArgumentError(`annotation ${key('kernel_params')}: kernel parameter ${JSON.stringify(param)} is refused: ${notAllowed}`),
    );
    expect(config.hypervisor.kernelParams).toEqual([]);
  });

  it.each<[string, string]>([
    // the kernel strips quotes, so "init=/x" sets init
    ['"init=/usr/bin/node"', '"init=/usr/bin/node"'],
    ['loglevel="7 init=/bin/sh"', 'loglevel="7'],
    // the kernel splits at byte 0xA0: "à" is C3 A0 in UTF-8
    ['loglevel=7\u00e0init=/bin/sh', 'loglevel=7\u00e0init=/bin/sh'],
  ])('refuses %j, whose bytes the kernel reads otherwise', (value, param) => {
    const config = configWith(['kernel_params']);
    expect(() => apply(config, { [key('kernel_params')]: value })).toThrow(
      new InvalidArgumentError(`annotation ${key('kernel_params')}: kernel parameter ${JSON.stringify(param)} is refused: only printable ASCII without double quotes is allowed`),
    );
  });

  it("allows the logging and page-size parameters, in either spelling, and leaves the file's own alone", () => {
    for (const ok of ['loglevel=7', 'quiet', 'nmi_watchdog=0', 'transparent_hugepage=never', 'transparent-hugepage=never', 'initcall_debug', 'hugepagesz=2M', 'hugepages=16', 'printk.time=1']) {
      expect(annotationKernelParamRefusal(ok)).toBeUndefined();
    }
    // The administrator is trusted: a file may set any of them.
    const config = configWith(['kernel_params'], { kernelParams: ['init=/sbin/other-init', 'mitigations=off', 'katats.debug=1'] });
    expect(apply(config, { [key('kernel_params')]: 'loglevel=7' }).hypervisor.kernelParams).toEqual(['init=/sbin/other-init', 'mitigations=off', 'katats.debug=1', 'loglevel=7']);
    // ... and a pod cannot replace them.
    expect(() => apply(config, { [key('kernel_params')]: 'mitigations=auto' })).toThrow('kernel parameter "mitigations=auto" is refused');
  });

  it('leaves other annotations alone and refuses non-hypervisor keys', () => {
    const config = configWith(['.*']);
    expect(apply(config, { 'io.kubernetes.cri.sandbox-id': 'x', 'io.katacontainers.pkg.oci.bundle_path': '/b' }).hypervisor.memoryMiB).toBe(1024);
    expect(() => apply(config, { 'io.katacontainers.config.agent.debug_console_enabled': 'true' })).toThrow('is not enabled: only hypervisor keys can be');
  });
});
