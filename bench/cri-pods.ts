// Pod start through CRI, as kubelet does it: RunPodSandbox (netns, CNI, pause
// container), then CreateContainer + StartContainer of one app container. Measured
// for the runc and kata handlers against one private CRI containerd, and for the kata
// handler with VM templates on against another running beside it, arms interleaved.
import * as fs from 'fs';
import * as path from 'path';
import { removeCgroupTree } from '../tests/harness/cgroups';
import { KATA_HANDLER, RUNC_HANDLER } from '../tests/harness/containerd';
import { containerConfig, podSandboxConfig } from '../tests/harness/cri-pod';
import { CriKataEnv, startCriKataEnv, writeConfig } from '../tests/e2e/kata-env';
import { median, roundOrder, stopAll } from './measure';
import { onReadySpare } from './on-spare';

export interface PodStartTimes {
  /** RunPodSandbox alone (for kata: the VM boot). */
  sandboxMs: number;
  /** RunPodSandbox + CreateContainer + StartContainer. */
  podMs: number;
}

export type CriArm = 'runc' | 'kata-ts' | 'kata-ts template' | 'kata-ts template + spare VM';

export async function measureCriPodStart(samples: number, say: (line: string) => void): Promise<Record<CriArm, PodStartTimes>> {
  const templatePath = fs.mkdtempSync('/var/tmp/kt-bench-templates-');
  const envs: CriKataEnv[] = [];
  let measured: Record<CriArm, PodStartTimes> | undefined;
  try {
    // Two CRI containerds side by side: one whose kata handler boots every VM (runc's
    // handler too), one whose kata handler clones a template.
    const cold = await criEnv();
    envs.push(cold);
    const templated = await criEnv(templatePath);
    envs.push(templated);
    // Spare shims that each hold a VM restored ahead ([factory] spare_vms), on the same template.
    const spareVms = await criEnv(templatePath, 1, true);
    envs.push(spareVms);
    // The template arm's first pod makes the template (as `factory init` would): not measured.
    await startPod(templated, KATA_HANDLER, 'bench-template-warm-up');
    // The spare arm's first pod launches its first spare: not measured.
    await startPod(spareVms, KATA_HANDLER, 'bench-spare-warm-up');
    const arms: Array<[CriArm, CriKataEnv, string]> = [
      ['runc', cold, RUNC_HANDLER],
      ['kata-ts', cold, KATA_HANDLER],
      ['kata-ts template', templated, KATA_HANDLER],
      ['kata-ts template + spare VM', spareVms, KATA_HANDLER],
    ];
    // Round by round, each arm once per round and each round starting with the next,
    // so the host's drift in speed over the minutes this takes is spread over all arms.
    say(`${samples} rounds of CRI RunPodSandbox + CreateContainer + StartContainer, one per arm (${arms.map(([name]) => name).join(', ')})`);
    const times = new Map<CriArm, PodStartTimes[]>(arms.map(([name]) => [name, []]));
    for (let i = 0; i < samples; i++) {
      for (const a of roundOrder(arms.length, i)) {
        const [name, env, handler] = arms[a];
        const start = () => startPod(env, handler, `bench-${name.replace(/[ +]+/g, '-')}-${i}`);
        times.get(name)!.push(env === spareVms ? await onReadySpare(env.cd.state, () => env.cd.logs(), true, start) : await start());
      }
      say(`CRI round ${i + 1} of ${samples} done`);
    }
    const result = {} as Record<CriArm, PodStartTimes>;
    for (const [name, list] of times) {
      result[name] = { sandboxMs: median(list.map((t) => t.sandboxMs)), podMs: median(list.map((t) => t.podMs)) };
      // Every sample, round by round, for the spread a median hides.
      say(`CRI ${name}: pod start ${list.map((t) => t.podMs.toFixed(0)).join(', ')} ms (RunPodSandbox ${list.map((t) => t.sandboxMs.toFixed(0)).join(', ')})`);
    }
    measured = result;
  } finally {
    try {
      await stopAll(envs.map((env) => env.stop()), measured !== undefined, say);
    } finally {
      fs.rmSync(templatePath, { recursive: true, force: true });
    }
  }
  return measured;
}

/**
 * A CRI containerd with both handlers; with `templatePath`, its kata configuration has
 * VM templates on, with `spareShims`, spare shim daemons.
 */
export function criEnv(templatePath?: string, spareShims = 0, spareVms = false): Promise<CriKataEnv> {
  return startCriKataEnv('/tmp/kt-bench-cri-', (dir) => {
    const config = path.join(dir, 'config.json');
    writeConfig(config, path.join(dir, 'vm'), { hypervisor: { memoryMiB: 512 }, factory: { ...(templatePath ? { enableTemplate: true, templatePath } : {}), ...(spareShims ? { spareShims } : {}), ...(spareVms ? { spareVms } : {}) } });
    return { env: { KATATS_CONFIG: config } };
  });
}

/** One pod started, timed, and removed. */
export async function startPod(env: CriKataEnv, handler: string, name: string): Promise<PodStartTimes> {
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
