// `kata-ts-runtime factory init|status|destroy`: VM templates ahead of time, what is
// kept, and their removal (Kata's `kata-runtime factory`).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { RuntimeConfig } from '../config/runtime-config';
import { Hypervisor } from '../hypervisors/hypervisor';
import { Logger } from '../lib/logger';
import { hostSize, vmSizing } from '../sandbox/resources';
import { podVmConfig } from '../sandbox/sandbox';
import { cloneRefusal, listTemplates, removeTemplate, templateKey, VmTemplates } from '../sandbox/vm-templates';

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
  const vm = podVm(config, hypervisor);
  const refusal = cloneRefusal(hypervisor, vm);
  if (refusal) throw new Error(`no template can be made with this configuration: ${refusal}`);
  const templates = new VmTemplates(config.factory.templatePath, newHypervisor, config.agent, logger);
  const dir = await templates.ensureTemplate(vm, hypervisor);
  return `template ready: ${dir} (key ${templateKey(hypervisor, vm)})\n`;
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

/** Removes every template; clones that run keep their (now unlinked) RAM file mapped. */
export function factoryDestroy(config: RuntimeConfig): string {
  const templates = listTemplates(config.factory.templatePath);
  for (const t of templates) removeTemplate(t.dir);
  // Unfinished builds of a shim that died; a live build holds the lock and is left alone.
  const lockHeld = fs.existsSync(path.join(config.factory.templatePath, '.lock'));
  if (!lockHeld) {
    for (const e of fs.existsSync(config.factory.templatePath) ? fs.readdirSync(config.factory.templatePath) : []) {
      if (e.startsWith('.building-')) fs.rmSync(path.join(config.factory.templatePath, e), { recursive: true, force: true });
    }
  }
  return `removed ${templates.length} template${templates.length === 1 ? '' : 's'} from ${config.factory.templatePath}${lockHeld ? ' (a template is being made now: it is left alone)' : ''}\n`;
}
