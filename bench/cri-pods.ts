// Pod start through CRI, as kubelet does it: RunPodSandbox (netns, CNI, pause
// container), then CreateContainer + StartContainer of one app container. Measured
// for the runc and kata handlers against one private CRI containerd, and for the kata
// handler with VM templates on against another.
import * as fs from 'fs';
import * as path from 'path';
import { removeCgroupTree } from '../tests/harness/cgroups';
import { KATA_HANDLER, RUNC_HANDLER } from '../tests/harness/containerd';
import { containerConfig, podSandboxConfig } from '../tests/harness/cri-pod';
import { CriKataEnv, startCriKataEnv, writeConfig } from '../tests/e2e/kata-env';
import { median } from './measure';

export interface PodStartTimes {
  /** RunPodSandbox alone (for kata: the VM boot). */
  sandboxMs: number;
  /** RunPodSandbox + CreateContainer + StartContainer. */
  podMs: number;
}

export type CriArm = 'runc' | 'kata-ts' | 'kata-ts template';

export async function measureCriPodStart(samples: number, say: (line: string) => void): Promise<Record<CriArm, PodStartTimes>> {
  const cold = await measureIn(samples, say, [['runc', RUNC_HANDLER], ['kata-ts', KATA_HANDLER]]);
  const templatePath = fs.mkdtempSync('/var/tmp/kt-bench-templates-');
  try {
    const template = await measureIn(samples, say, [['kata-ts template', KATA_HANDLER]], templatePath);
    return { ...cold, ...template } as Record<CriArm, PodStartTimes>;
  } finally {
    fs.rmSync(templatePath, { recursive: true, force: true });
  }
}

/** The arms against one CRI containerd; with `templatePath`, its kata configuration has VM templates on. */
async function measureIn(samples: number, say: (line: string) => void, arms: Array<[CriArm, string]>, templatePath?: string): Promise<Partial<Record<CriArm, PodStartTimes>>> {
  const env = await startCriKataEnv('/tmp/kt-bench-cri-', (dir) => {
    const config = path.join(dir, 'config.json');
    writeConfig(config, path.join(dir, 'vm'), { hypervisor: { memoryMiB: 512 }, factory: templatePath ? { enableTemplate: true, templatePath } : {} });
    return { env: { KATATS_CONFIG: config } };
  });
  try {
    const result: Partial<Record<CriArm, PodStartTimes>> = {};
    // The first pod of a template arm makes the template (as `factory init` would): not measured.
    if (templatePath) await startPod(env, KATA_HANDLER, 'bench-template-warm-up');
    for (const [name, handler] of arms) {
      say(`${name}: ${samples} × CRI RunPodSandbox + CreateContainer + StartContainer`);
      const sandbox: number[] = [];
      const pod: number[] = [];
      for (let i = 0; i < samples; i++) {
        const t = await startPod(env, handler, `bench-${name.replace(/ /g, '-')}-${i}`);
        sandbox.push(t.sandboxMs);
        pod.push(t.podMs);
      }
      result[name] = { sandboxMs: median(sandbox), podMs: median(pod) };
    }
    return result;
  } finally {
    await env.stop();
  }
}

/** One pod started, timed, and removed. */
async function startPod(env: CriKataEnv, handler: string, name: string): Promise<PodStartTimes> {
  const { cd, cri, images } = env;
  const config = podSandboxConfig(cd.cri, name);
  const t0 = process.hrtime.bigint();
  const { pod_sandbox_id } = await cri.runPodSandbox({ config, runtime_handler: handler });
  const t1 = process.hrtime.bigint();
  const { container_id } = await cri.createContainer({ pod_sandbox_id, config: containerConfig('app', images.busybox, ['sleep', '3600']), sandbox_config: config });
  await cri.startContainer({ container_id });
  const t2 = process.hrtime.bigint();
  await cri.stopPodSandbox({ pod_sandbox_id });
  await cri.removePodSandbox({ pod_sandbox_id });
  removeCgroupTree(config.linux?.cgroup_parent ?? '');
  return { sandboxMs: Number(t1 - t0) / 1e6, podMs: Number(t2 - t0) / 1e6 };
}
