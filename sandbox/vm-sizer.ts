// The one owner of the pod VM's size. It records what each container asks for
// (resources.ts) and grows the VM before a container needs the room: the hypervisor
// hot-plugs vCPUs and memory, then the agent onlines them in the guest. It never
// shrinks the VM: memory cannot be taken back from a guest (Kata does not either), and
// a deleted container's share stays for the next one. Grows run one at a time, so
// each sees the size the previous one reached.
import { Logger } from '../lib/logger';
import { Hypervisor, VmResize, VmSize } from '../hypervisors/hypervisor';
import { AgentClient } from './agent-client';
import { ContainerResources, NO_RESOURCES, podDemand, VmSizing, vmTarget } from './resources';

export class VmSizer {
  /** What each container of the pod asks for, once the VM fits it. */
  private readonly asks = new Map<string, ContainerResources>();
  /** The VM's size as the hypervisor last reported it. */
  private size: VmSize;
  private queue: Promise<unknown> = Promise.resolve();
  private warnedNoResize = false;

  constructor(
    private readonly sizing: VmSizing,
    private readonly hypervisor: Pick<Hypervisor, 'name' | 'resize'>,
    private readonly agent: Pick<AgentClient, 'onlineCpuMem'>,
    private readonly logger: Logger,
  ) {
    this.size = sizing.boot;
  }

  /** What `containerId` asks for now (for an Update, which changes only what it names). */
  resourcesOf(containerId: string): ContainerResources {
    return this.asks.get(containerId) ?? NO_RESOURCES;
  }

  /**
   * Grows the VM, if it must, so that it fits `containerId` with `resources` beside the
   * pod's other containers; records them once it does. Fails if the VM could not grow
   * or the guest did not online what was plugged.
   */
  fit(containerId: string, resources: ContainerResources): Promise<void> {
    const run = this.queue.then(() => this.fitNow(containerId, resources));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** The container is gone; the VM keeps its size (see above). */
  forget(containerId: string): void {
    this.asks.delete(containerId);
  }

  private async fitNow(containerId: string, resources: ContainerResources): Promise<void> {
    const pod = [...this.asks].filter(([id]) => id !== containerId).map(([, r]) => r);
    pod.push(resources);
    const target = vmTarget(this.sizing, pod);
    const demand = podDemand(pod);
    const grow: VmResize = {
      ...(target.vcpus > this.size.vcpus ? { vcpus: target.vcpus } : {}),
      ...(target.memoryMiB > this.size.memoryMiB ? { memoryMiB: target.memoryMiB } : {}),
    };
    const decision = { container: containerId, demand, boot: this.sizing.boot, max: this.sizing.max, target, current: this.size };
    if (grow.vcpus === undefined && grow.memoryMiB === undefined) {
      this.logger.debug(decision, 'VM already large enough');
    } else if (!this.hypervisor.resize) {
      if (!this.warnedNoResize) this.logger.warn(decision, `the ${this.hypervisor.name} driver cannot hot-plug vCPUs or memory; the VM keeps its boot size`);
      this.warnedNoResize = true;
    } else {
      if (target.vcpus < this.sizing.boot.vcpus + demand.vcpus || target.memoryMiB < this.sizing.boot.memoryMiB + demand.memoryMiB) {
        this.logger.warn(decision, 'the pod asks for more than the VM may grow to (default_maxvcpus/default_maxmemory); growing to the limit');
      }
      this.size = await this.hypervisor.resize(grow);
      const online = await this.agent.onlineCpuMem({ cpus: this.size.vcpus, memoryMiB: this.size.memoryMiB });
      this.logger.info({ ...decision, size: this.size, online }, 'VM grown');
    }
    this.asks.set(containerId, resources);
  }
}
