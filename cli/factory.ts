// `kata-ts-runtime factory init|status|destroy`: VM templates ahead of time, what is
// kept, and their removal (Kata's `kata-runtime factory`); status and destroy also
// cover the spare shim daemons ([factory] spare_shims) waiting under containerd's state dir.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { RuntimeConfig } from '../config/runtime-config';
import { Hypervisor } from '../hypervisors/hypervisor';
import { Logger, silentLogger } from '../lib/logger';
import { hostSize, vmSizing } from '../sandbox/resources';
import { podVmConfig } from '../sandbox/sandbox';
import { cloneRefusal, listTemplates, removeAbandoned, removeTemplateLocked, templateKey, VmTemplates } from '../sandbox/vm-templates';
import { sweepWarmDirs, warmRoot } from '../sandbox/warm-vm';
import { checkPoolDir, poolDirs, poolSpares, sparePoolsRootOf, stopWaitingSpares } from '../shim/spare-pool';

/** containerd's default state dir (its `state` setting), under which its shims' spare pools live. */
export const DEFAULT_CONTAINERD_STATE = '/run/containerd';

/** How long `factory destroy` waits for a pod's shim to finish with a template (its check and restore take well under a second). */
const DESTROY_LOCK_WAIT_MS = 10_000;
const plural = (n: number, what: string, many = `${what}s`): string => `${n} ${n === 1 ? what : many}`;

/** The spare VMs' directories (sandbox/warm-vm.ts), live or left by dead spares. */
function spareVmDirs(config: RuntimeConfig): string[] {
  try {
    return fs.readdirSync(warmRoot(config.runtime.stateDir));
  } catch {
    return [];
  }
}
const pidList = (pids: number[]): string => (pids.length > 0 ? ` (${pids.join(' ')})` : '');

/** Where `init` puts the template's VM description: a pod's paths play no part in the key. */
const PLACEHOLDER_POD = 'factory-init';

/** The VM a pod gets from the configuration as written (its cgroup limits are no part of it): the template `init` makes. */
function podVm(config: RuntimeConfig, hypervisor: Hypervisor) {
  const workDir = path.join(config.runtime.stateDir, PLACEHOLDER_POD);
  return podVmConfig(config, hypervisor, { id: PLACEHOLDER_POD, workDir, sharedDir: path.join(workDir, 'shared'), sizing: vmSizing(config.hypervisor, hostSize()) });
}

export async function factoryInit(config: RuntimeConfig, newHypervisor: () => Hypervisor, logger: Logger): Promise<string> {
  if (!config.factory.enableTemplate) throw new Error('[factory] enable_template is false: pods would not use a template; set it to true first');
  const hypervisor = newHypervisor();
  const templates = new VmTemplates(config.factory.templatePath, newHypervisor, config.agent, logger);
  // ensureTemplate says why when this configuration cannot have one.
  const dir = await templates.ensureTemplate(podVm(config, hypervisor), hypervisor);
  return `template ready: ${dir} (key ${path.basename(dir)})\n`;
}

/** One line per spare pool of this containerd: its live spares by state. Read only: a dead spare's files stay for the pool's next user to remove. */
function spareLines(config: RuntimeConfig, containerdState: string): string[] {
  const root = sparePoolsRootOf(containerdState);
  const lines = [`spare_shims: ${config.factory.spareShims}`, `spare_vms: ${config.factory.spareVms} (${plural(spareVmDirs(config).length, 'spare VM directory', 'spare VM directories')} under ${warmRoot(config.runtime.stateDir)})`];
  let pools: string[];
  try {
    pools = poolDirs(root);
  } catch (err) {
    return [...lines, `cannot read ${root}: ${(err as Error).message}`];
  }
  if (pools.length === 0) lines.push(`no spare shims under ${root}`);
  for (const dir of pools) {
    try {
      checkPoolDir(dir);
    } catch (err) {
      lines.push(`${dir}  refused: ${(err as Error).message}`);
      continue;
    }
    const { ready, starting, beingClaimed } = poolSpares(dir, false);
    lines.push(`${dir}  ready ${ready.length}${pidList(ready)}  starting ${starting.length}${pidList(starting)}  being claimed ${beingClaimed.length}${pidList(beingClaimed)}`);
  }
  return lines;
}

export function factoryStatus(config: RuntimeConfig, newHypervisor: () => Hypervisor, containerdState = DEFAULT_CONTAINERD_STATE): string {
  const lines = [`enable_template: ${config.factory.enableTemplate}`, `template_path: ${config.factory.templatePath}`];
  const hypervisor = newHypervisor();
  const vm = podVm(config, hypervisor);
  const refusal = cloneRefusal(hypervisor, vm);
  const current = refusal ? undefined : templateKey(hypervisor, vm);
  lines.push(refusal ? `pods of this configuration cannot be clones: ${refusal}` : `template for this configuration: ${current}`);
  const templates = listTemplates(config.factory.templatePath);
  if (templates.length === 0) lines.push('no templates');
  for (const t of templates) {
    const name = path.basename(t.dir);
    const what = t.meta ? `made ${t.meta.createdAt}` : 'incomplete or unreadable';
    lines.push(`${name}  ${(t.bytes / 1024 / 1024).toFixed(1)} MiB on disk  ${what}${name === current ? '  (this configuration)' : ''}`);
  }
  lines.push(...spareLines(config, containerdState));
  return lines.join(os.EOL) + os.EOL;
}

/**
 * Removes every template, and what shims that died left (clones that run keep their
 * now unlinked RAM file mapped), and stops the spare shims that wait for a pod. Pods'
 * daemons, spares that became one included, are not touched; pods started later launch
 * spares again while their configuration asks for them.
 */
export async function factoryDestroy(config: RuntimeConfig, containerdState = DEFAULT_CONTAINERD_STATE): Promise<string> {
  const lines: string[] = [];
  let stopped = 0;
  const root = sparePoolsRootOf(containerdState);
  let pools: string[] = [];
  try {
    pools = poolDirs(root);
  } catch (err) {
    lines.push(`cannot read ${root}: ${(err as Error).message}`);
  }
  for (const dir of pools) {
    try {
      const result = await stopWaitingSpares(dir);
      stopped += result.stopped.length;
      if (result.left.length > 0) lines.push(`${dir}: ${plural(result.left.length, 'spare shim')} still starting${pidList(result.left)}; run destroy again`);
    } catch (err) {
      lines.push(`${dir}: not touched: ${(err as Error).message}`);
    }
  }
  // The stopped spares' VMs died with them (their parent-death signal); their directories remain.
  const swept = await sweepWarmDirs(warmRoot(config.runtime.stateDir), silentLogger());
  // Each under its lock: a pod's shim checking or opening one keeps it until it is done (a clone restoring keeps the file it opened).
  let removed = 0;
  for (const t of listTemplates(config.factory.templatePath)) {
    const notRemoved = await removeTemplateLocked(config.factory.templatePath, t.dir, DESTROY_LOCK_WAIT_MS, silentLogger());
    if (notRemoved === undefined) removed++;
    else if (fs.existsSync(t.dir)) lines.push(`${path.basename(t.dir)}: not removed: ${notRemoved}; run destroy again`);
  }
  const abandoned = await removeAbandoned(config.factory.templatePath, silentLogger());
  lines.unshift(`removed ${plural(removed, 'template')}${abandoned > 0 ? ` and ${plural(abandoned, 'leftover')} of shims that died` : ''} from ${config.factory.templatePath}; stopped ${plural(stopped, 'spare shim')}, removed ${plural(swept.length, 'spare VM')}`);
  return lines.join(os.EOL) + os.EOL;
}
