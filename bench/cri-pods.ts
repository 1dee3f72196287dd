// Pod start through CRI, as kubelet does it: RunPodSandbox (netns, CNI, pause
// container), then CreateContainer + StartContainer of one app container. Measured
// for the runc and kata handlers against one private CRI containerd.
import { removeCgroupTree } from '../tests/harness/cgroups';
import { KATA_HANDLER, RUNC_HANDLER } from '../tests/harness/containerd';
import { containerConfig, podSandboxConfig } from '../tests/harness/cri-pod';
import { startCriKataEnv } from '../tests/e2e/kata-env';
import { median } from './measure';

export interface PodStartTimes {
  /** RunPodSandbox alone (for kata: the VM boot). */
  sandboxMs: number;
  /** RunPodSandbox + CreateContainer + StartContainer. */
  podMs: number;
}

export async function measureCriPodStart(samples: number, say: (line: string) => void): Promise<Record<'runc' | 'kata-ts', PodStartTimes>> {
  const env = await startCriKataEnv('/tmp/kt-bench-cri-');
  const { cd, cri, images } = env;
  try {
    const result = {} as Record<'runc' | 'kata-ts', PodStartTimes>;
    for (const [name, handler] of [['runc', RUNC_HANDLER], ['kata-ts', KATA_HANDLER]] as const) {
      say(`${name}: ${samples} × CRI RunPodSandbox + CreateContainer + StartContainer`);
      const sandbox: number[] = [];
      const pod: number[] = [];
      for (let i = 0; i < samples; i++) {
        const config = podSandboxConfig(cd.cri, `bench-${name}-${i}`);
        const t0 = process.hrtime.bigint();
        const { pod_sandbox_id } = await cri.runPodSandbox({ config, runtime_handler: handler });
        const t1 = process.hrtime.bigint();
        const { container_id } = await cri.createContainer({ pod_sandbox_id, config: containerConfig('app', images.busybox, ['sleep', '3600']), sandbox_config: config });
        await cri.startContainer({ container_id });
        const t2 = process.hrtime.bigint();
        sandbox.push(Number(t1 - t0) / 1e6);
        pod.push(Number(t2 - t0) / 1e6);
        await cri.stopPodSandbox({ pod_sandbox_id });
        await cri.removePodSandbox({ pod_sandbox_id });
        removeCgroupTree(config.linux?.cgroup_parent ?? '');
      }
      result[name] = { sandboxMs: median(sandbox), podMs: median(pod) };
    }
    return result;
  } finally {
    await env.stop();
  }
}
