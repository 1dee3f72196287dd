// `kata-ts-runtime factory init|status|destroy`: VM templates ahead of time, what is
// kept, and their removal (Kata's `kata-runtime factory`).
import * as os from 'os';
import * as path from 'path';
import { RuntimeConfig } from '../config/runtime-config';
import { Hypervisor } from '../hypervisors/hypervisor';
import { Logger } from '../lib/logger';
import { hostSize, vmSizing } from '../sandbox/resources';
import { podVmConfig } from '../sandbox/sandbox';
import { cloneRefusal, listTemplates, removeAbandoned, removeTemplate, templateKey, VmTemplates } from '../sandbox/vm-templates';

/** Where `init` puts the template's VM description: a pod's paths play no part in the key. */
const PLACEHOLDER_POD = 'factory-init';

/** The VM a pod without pod-level cgroup limits gets: the template `init` makes. */
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

export function factoryStatus(config: RuntimeConfig, newHypervisor: () => Hypervisor): string {
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
  return lines.join(os.EOL) + os.EOL;
}

/** Removes every template, and what shims that died left; clones that run keep their (now unlinked) RAM file mapped. */
export function factoryDestroy(config: RuntimeConfig): string {
  const templates = listTemplates(config.factory.templatePath);
  for (const t of templates) removeTemplate(t.dir);
  const abandoned = removeAbandoned(config.factory.templatePath);
  return `removed ${templates.length} template${templates.length === 1 ? '' : 's'}${abandoned > 0 ? ` and ${abandoned} unfinished build${abandoned === 1 ? '' : 's'}` : ''} from ${config.factory.templatePath}\n`;
}
