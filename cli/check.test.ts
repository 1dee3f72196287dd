import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { defaultConfig, KsmMode, RuntimeConfig } from '../config/runtime-config';
import { HostKsm } from '../sandbox/ksm';
import { VmExit } from '../hypervisors/hypervisor';
import { agentChannelCheck, bootProbe, CheckLine, configurationLine, hasFatalFailure, ksmCheck, ProbedHypervisor, runChecks, sharedFsCheck } from './check';

describe('kata-ts-runtime check', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'check-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const withKsm = (mode: KsmMode): RuntimeConfig => {
    const config = defaultConfig();
    config.runtime.ksm = mode;
    return config;
  };
  const hostKsm = (run: string | undefined): HostKsm => {
    const ksmDir = path.join(dir, 'ksm');
    if (run !== undefined) {
      fs.mkdirSync(ksmDir, { recursive: true });
      fs.writeFileSync(path.join(ksmDir, 'run'), `${run}\n`);
      fs.writeFileSync(path.join(ksmDir, 'pages_sharing'), '0\n');
    }
    return new HostKsm(ksmDir);
  };

  it.each([
    ['unchanged', '0', 'PASS', 'run = 0 (ksmd stopped), 0 pages merged away; ksm = "unchanged" leaves it so'],
    ['on', '1', 'PASS', 'run = 1 (ksmd running), 0 pages merged away; as ksm = "on" wants'],
    ['on', '0', 'PASS', 'run = 0 (ksmd stopped), 0 pages merged away; each sandbox start sets run = 1 (ksm = "on")'],
    ['off', '1', 'PASS', 'run = 1 (ksmd running), 0 pages merged away; each sandbox start sets run = 0 (ksm = "off")'],
    ['on', undefined, 'FAIL', 'but ksm = "on": sandboxes will not start'],
    ['off', undefined, 'PASS', 'nothing is merged, as ksm = "off" asks'],
  ] as const)('reports KSM under ksm = %j with run = %j as %s', (mode, run, verdict, detail) => {
    const line = ksmCheck(withKsm(mode), hostKsm(run));
    expect(line).toMatchObject({ verdict, name: 'ksm' });
    expect(line.detail).toContain(detail);
    expect(hasFatalFailure([line])).toBe(verdict === 'FAIL');
  });

  it('fails KSM when the switch needs changing but cannot be written', () => {
    fs.mkdirSync(path.join(dir, 'ksm'));
    fs.symlinkSync('/proc/sys/kernel/ngroups_max', path.join(dir, 'ksm', 'run'));
    const line = ksmCheck(withKsm('off'), new HostKsm(path.join(dir, 'ksm')));
    expect(line.verdict).toBe('FAIL');
    expect(line.detail).toContain(`ksm = "off" needs run = 0, but ${path.join(dir, 'ksm')}/run is not writable here`);
  });

  it('says how container files reach the guest, and fails virtio-fs without a usable virtiofsd', async () => {
    expect(await sharedFsCheck(defaultConfig())).toMatchObject({ verdict: 'PASS', detail: expect.stringContaining('virtio-9p') });
    const missing = defaultConfig();
    Object.assign(missing.hypervisor, { sharedFs: 'virtio-fs', virtioFsDaemon: path.join(dir, 'no-such-virtiofsd') });
    const line = await sharedFsCheck(missing);
    expect(line).toMatchObject({ verdict: 'FAIL', detail: expect.stringContaining('is not an executable file') });
    expect(hasFatalFailure([line])).toBe(true);
    expect((await sharedFsCheck(defaultConfig('firecracker'))).detail).toBe('none: Firecracker has no shared filesystem');
  });

  (fs.existsSync('/usr/lib/qemu/virtiofsd') ? it : it.skip)("names Debian 12's virtiofsd, its flavour and version, when virtio-fs is configured", async () => {
    const config = defaultConfig();
    config.hypervisor.sharedFs = 'virtio-fs';
    expect(await sharedFsCheck(config)).toMatchObject({ verdict: 'PASS', detail: expect.stringMatching(/^virtio-fs through \/usr\/lib\/qemu\/virtiofsd \(QEMU's C virtiofsd: virtiofsd version 7\./) });
  });

  it('says how the agent is reached, and fails hybrid vsock without a usable vhost-device-vsock', async () => {
    expect(await agentChannelCheck(defaultConfig())).toMatchObject({ verdict: 'PASS', detail: expect.stringContaining('virtio-serial (no daemon') });
    const missing = defaultConfig();
    Object.assign(missing.hypervisor, { agentChannel: 'hybrid-vsock', vsockBackend: path.join(dir, 'no-such-backend') });
    const line = await agentChannelCheck(missing);
    expect(line).toMatchObject({ verdict: 'FAIL', detail: expect.stringContaining('is not an executable file; fetch it with scripts/fetch-vhost-device-vsock.sh') });
    expect(hasFatalFailure([line])).toBe(true);
    expect((await agentChannelCheck(defaultConfig('firecracker'))).detail).toBe("hybrid vsock, Firecracker's own vsock device");
    const backend = process.env.KATATS_VSOCK_BACKEND;
    if (backend) {
      Object.assign(missing.hypervisor, { vsockBackend: backend });
      expect(await agentChannelCheck(missing)).toMatchObject({ verdict: 'PASS', detail: expect.stringMatching(/^hybrid vsock through .* \(vhost-device-vsock \d/) });
    }
  });

  it('says which channel agent_channel = "auto" gets on this host, and why', async () => {
    const auto = defaultConfig();
    Object.assign(auto.hypervisor, { agentChannel: 'auto', vsockBackend: path.join(dir, 'no-such-backend') });
    expect(await agentChannelCheck(auto)).toEqual({
      verdict: 'PASS',
      name: 'agent channel',
      detail: `virtio-serial (no daemon, guest RAM private): agent_channel = "auto": no vsock backend at ${dir}/no-such-backend (scripts/fetch-vhost-device-vsock.sh fetches one); kernel vhost-vsock is not used (Node has no AF_VSOCK to dial a guest CID)`,
    });
    // Installed but not what it claims to be: the channel auto chose cannot start.
    const installed = { backendInstalled: () => true };
    expect(await agentChannelCheck(auto, installed)).toMatchObject({ verdict: 'FAIL', detail: expect.stringMatching(/^agent_channel = "auto": \S+ is installed, but vsock backend '\S+' is not an executable file; .*: sandboxes will not start$/) });
    const backend = process.env.KATATS_VSOCK_BACKEND;
    if (backend) {
      Object.assign(auto.hypervisor, { vsockBackend: backend });
      expect(await agentChannelCheck(auto)).toMatchObject({ verdict: 'PASS', detail: expect.stringContaining(`agent_channel = "auto": ${backend} is installed`) });
    }
  });

  it('checks the configured VMM, and says Cloud Hypervisor boots but is untested here', async () => {
    const config = defaultConfig('clh');
    config.hypervisor.path = path.join(dir, 'no-such-cloud-hypervisor');
    const lines = await runChecks(config, { kvmTimeoutMs: 1000, tcgTimeoutMs: 1000, ksm: hostKsm('0') });
    const byName = new Map<string, CheckLine>(lines.map((l) => [l.name, l]));
    expect(byName.get('clh')).toMatchObject({ verdict: 'FAIL', detail: expect.stringContaining('set hypervisor.clh.path') });
    expect(byName.has('qemu')).toBe(false);
    expect(byName.has('tcg boot')).toBe(false); // only QEMU emulates
    expect(byName.get('vhost-vsock')).toMatchObject({ verdict: 'PASS', detail: expect.stringContaining('not needed') });
    expect(byName.get('configuration')).toMatchObject({ verdict: 'FAIL', detail: 'accelerator = "kvm" could not be tried' });
    expect(hasFatalFailure(lines)).toBe(true);
    // Where KVM boots its guests: a warning, not a failure.
    expect(configurationLine(config, { kvm: true })).toEqual({ verdict: 'WARN', name: 'configuration', detail: expect.stringMatching(/^accelerator = "kvm" boots guests, but no pod has run under Cloud Hypervisor in kata-ts's own tests/) });
  });

  it('says why sandboxes cannot start under Firecracker, whatever the host can do', () => {
    expect(configurationLine(defaultConfig('firecracker'), { kvm: true })).toEqual({
      verdict: 'FAIL',
      name: 'configuration',
      detail: '[hypervisor.firecracker]: sandboxes cannot start yet: Firecracker has no shared filesystem for container rootfs, and rootfs as block devices is not implemented (a test guest did boot)',
    });
  });

  it('counts a guest that printed its init marker and powered off between two polls as booted', async () => {
    // The smoke guest powers off once its check ran. Here the VMM is gone before the
    // probe's first look, and its last console output arrives only after the exit.
    let console = '';
    let resolveExit: (exit: VmExit) => void = () => undefined;
    const exited = new Promise<VmExit>((resolve) => (resolveExit = resolve));
    const vmm: ProbedHypervisor = {
      agentChannelKind: 'virtio-serial',
      exited,
      consoleTail: () => console,
      async start() {
        setImmediate(() => {
          resolveExit({ code: 0, signal: null });
          setTimeout(() => (console = 'katats-init: smoke check at 0.9 s\nsmoke: ok\nreboot: Power down\n'), 20);
        });
      },
      stop: async () => undefined,
    };
    expect(await bootProbe(defaultConfig(), 'tcg', 10_000, vmm)).toMatchObject({ booted: true });

    const silent: ProbedHypervisor = { ...vmm, exited: Promise.resolve({ code: 1, signal: null }), consoleTail: () => 'Kernel panic - not syncing: VFS\n', start: async () => undefined };
    expect(await bootProbe(defaultConfig(), 'tcg', 10_000, silent)).toEqual({ booted: false, seconds: expect.any(Number), detail: 'QEMU exited early (console: Kernel panic - not syncing: VFS)' });
  });
});
