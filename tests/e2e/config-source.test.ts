// Where a pod's configuration comes from, through real containerd 1.6: the CRI
// runtime's `options.ConfigPath` reaches the shim in Create and wins over
// $KATATS_CONFIG (which here names a file no sandbox could start with); the file's
// config.d/ drop-in applies; the daemon notes the file in the bundle for `delete`.
// `ctr run --runtime-config-path` travels the same way; an annotation naming a file
// outside the installed configuration directories is refused.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { removeCgroupTree } from '../harness/cgroups';
import { CRI_NAMESPACE, KATA_HANDLER } from '../harness/containerd';
import { podSandboxConfig } from '../harness/cri-pod';
import { waitForNoLeaks } from '../harness/leaks';
import { builtGuest, CriKataEnv, KataEnv, RUNTIME, sandboxWorkDir, startCriKataEnv, startKataEnv } from './kata-env';

jest.setTimeout(600_000);

describe('configuration chosen by the CRI runtime options', () => {
  let env: CriKataEnv;
  let mainFile: string;
  let dropInStateDir: string;

  beforeAll(async () => {
    env = await startCriKataEnv('/tmp/kt-cfg-', (dir) => {
      const q = JSON.stringify;
      const { kernel, image } = builtGuest();
      mainFile = path.join(dir, 'kata', 'configuration.toml');
      dropInStateDir = path.join(dir, 'vm2'); // short: socket paths below it must fit in 108 bytes
      fs.mkdirSync(path.join(dir, 'kata', 'config.d'), { recursive: true });
      fs.writeFileSync(mainFile, [
        '[hypervisor.qemu]', 'accelerator = "tcg"', `kernel = ${q(kernel)}`, `image = ${q(image)}`, 'default_memory = 512',
        '[agent.kata]', 'dial_timeout = 180',
        '[runtime]', `state_dir = ${q(path.join(dir, 'vm1'))}`, '',
      ].join('\n'));
      fs.writeFileSync(path.join(dir, 'kata', 'config.d', '10-state.toml'), `[runtime]\nstate_dir = ${q(dropInStateDir)}\n`);
      // Were this one read, every sandbox would fail on its unknown key.
      const decoy = path.join(dir, 'decoy.json');
      fs.writeFileSync(decoy, JSON.stringify({ runtime: { notAKey: true } }));
      return { env: { KATATS_CONFIG: decoy }, kataConfigPath: mainFile };
    });
  });

  afterAll(async () => {
    expect((await env?.stop()) ?? []).toEqual([]);
    expect(await waitForNoLeaks(env.before, 30_000)).toEqual([]);
  });

  it('boots the pod with the file the runtime options name, and notes it in the bundle', async () => {
    const { cd, cri } = env;
    const pod = podSandboxConfig(cd.cri, 'cfg-pod');
    const podId = (await cri.runPodSandbox({ config: pod, runtime_handler: KATA_HANDLER })).pod_sandbox_id;
    try {
      expect(fs.existsSync(path.join(sandboxWorkDir(dropInStateDir, CRI_NAMESPACE, podId), 'qmp.sock'))).toBe(true);
      const qemu = execFileSync('ps', ['-eo', 'args='], { encoding: 'utf8' }).split('\n').find((l) => l.includes(`sandbox-${podId}`)) ?? '';
      expect(qemu).toContain('-m 512M');
      const notes = execFileSync('find', [cd.dir, '-name', 'kata-ts.config-path'], { encoding: 'utf8' }).trim().split('\n').filter(Boolean);
      expect(notes.length).toBeGreaterThan(0);
      for (const note of notes) expect(fs.readFileSync(note, 'utf8').trim()).toBe(mainFile);
    } finally {
      await cri.stopPodSandbox({ pod_sandbox_id: podId });
      await cri.removePodSandbox({ pod_sandbox_id: podId });
      expect(removeCgroupTree(pod.linux?.cgroup_parent ?? '').failed).toEqual([]);
    }
    expect(fs.existsSync(sandboxWorkDir(dropInStateDir, CRI_NAMESPACE, podId))).toBe(false);
  });
});

describe('configuration chosen by ctr', () => {
  let env: KataEnv;
  beforeAll(async () => (env = await startKataEnv()));
  afterAll(async () => {
    await env?.stop();
  });

  it('takes --runtime-config-path over $KATATS_CONFIG', async () => {
    const { kernel, image } = builtGuest();
    const file = path.join(path.dirname(env.configPath), 'from-ctr.toml');
    const q = JSON.stringify;
    fs.writeFileSync(file, [
      '[hypervisor.qemu]', 'accelerator = "tcg"', `kernel = ${q(kernel)}`, `image = ${q(image)}`, 'kernel_params = "katats.from=runtime-config-path"',
      '[agent.kata]', 'dial_timeout = 180',
      '[runtime]', `state_dir = ${q(env.stateDir)}`, '',
    ].join('\n'));
    const result = await env.containerd.ctr(['run', '--rm', '--runtime', RUNTIME, '--runtime-config-path', file, env.image, 'cfg-1', 'cat', '/proc/cmdline'], { timeoutMs: 240_000 });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('katats.from=runtime-config-path');
  });

  it('refuses a config_path annotation the main configuration does not enable', async () => {
    const result = await env.containerd.ctr(['run', '--rm', '--runtime', RUNTIME, '--annotation', `io.katacontainers.config_path=${env.configPath}`, env.image, 'cfg-2', 'true'], { timeoutMs: 240_000 });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(`annotation io.katacontainers.config_path is not enabled: [runtime] valid_config_paths of ${env.configPath} is empty`);
    expect(fs.existsSync(env.stateDir) ? fs.readdirSync(env.stateDir) : []).toEqual([]);
  });
});
