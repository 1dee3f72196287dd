// What a sandbox tells whoever watches it (the shim daemon's metrics and management
// socket): when its work dir exists and when it goes, and the events worth counting
// (agent calls, hot-plugs). Figures that can be read at any time (the VMM's pid, the
// boot duration, the guest's own numbers) are pulled through ObservedSandbox instead.
import { Hypervisor, VmResize, VmSize } from '../hypervisors/hypervisor';
import { AgentCallObserver, GuestMetricsReport } from './agent-client';

export type HotplugDevice = 'block' | 'cpu' | 'memory';
export type HotplugOp = 'add' | 'remove';

/** The sandbox as its observer may read it. */
export interface ObservedSandbox {
  readonly id: string;
  readonly workDir: string;
  /** Seconds from the VMM's launch to the guest agent's first answer; undefined until then. */
  readonly bootSeconds: number | undefined;
  /** 0 when no VMM runs. */
  hypervisorPid(): number;
  /** Where the host reaches the guest agent (Kata's /agent-url), e.g. unix:///…/agent.sock. */
  agentUrl(): string;
  /** The guest's report, unchecked; fails when the VM has no agent (booting, stopped). */
  guestMetrics(timeoutMs: number): Promise<GuestMetricsReport>;
}

export interface SandboxObserver {
  /** The work dir exists; the VM boots next. Must not throw: watching never stops a pod. */
  sandboxStarted(sandbox: ObservedSandbox): Promise<void>;
  /** Awaited before the work dir is removed; may be told twice. */
  sandboxStopping(sandbox: ObservedSandbox): Promise<void>;
  agentCall: AgentCallObserver;
  hotplug(device: HotplugDevice, op: HotplugOp, failed: boolean): void;
}

export const NO_SANDBOX_OBSERVER: SandboxObserver = {
  sandboxStarted: async () => undefined,
  sandboxStopping: async () => undefined,
  agentCall: () => undefined,
  hotplug: () => undefined,
};

let installed: SandboxObserver = NO_SANDBOX_OBSERVER;

/**
 * The observer for sandboxes started without one. A shim daemon serves one sandbox,
 * and the Pod that starts it takes no observer, so the daemon installs its own here
 * once at startup; tests pass theirs to Sandbox.start.
 */
export function installSandboxObserver(observer: SandboxObserver): void {
  installed = observer;
}

export function installedSandboxObserver(): SandboxObserver {
  return installed;
}

/** The hypervisor's resize as the VM sizer sees it, each vCPU and memory hot-plug counted. */
export function countingResize(hypervisor: Pick<Hypervisor, 'name' | 'resize'>, observer: SandboxObserver): Pick<Hypervisor, 'name' | 'resize'> {
  const resize = hypervisor.resize?.bind(hypervisor);
  if (!resize) return { name: hypervisor.name };
  return {
    name: hypervisor.name,
    resize: async (target: VmResize): Promise<VmSize> => {
      const count = (failed: boolean): void => {
        if (target.vcpus !== undefined) observer.hotplug('cpu', 'add', failed);
        if (target.memoryMiB !== undefined) observer.hotplug('memory', 'add', failed);
      };
      try {
        const size = await resize(target);
        count(false);
        return size;
      } catch (err) {
        count(true);
        throw err;
      }
    },
  };
}
