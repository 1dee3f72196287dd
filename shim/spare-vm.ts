// The VM a spare shim daemon restores while it waits ([factory] spare_vms): from the
// configuration file of the daemon that launched it (the flag -spare-vm-config), as the
// pod that claims it would restore it (sandbox/warm-vm.ts has the VM's life).
import { loadConfigFrom } from '../config/config-location';
import { createHypervisor } from '../hypervisors/factory';
import { Logger } from '../lib/logger';
import { podVmConfig } from '../sandbox/sandbox';
import { installedSandboxObserver } from '../sandbox/sandbox-observer';
import { VmTemplates } from '../sandbox/vm-templates';
import { WarmVm } from '../sandbox/warm-vm';

/** Undefined (logged) when the file no longer asks for spare VMs or cannot be read, or the VM cannot be restored. */
export async function startSpareVm(configPath: string, logger: Logger): Promise<WarmVm | undefined> {
  let config;
  try {
    config = loadConfigFrom({ path: configPath, via: 'the shim daemon that launched this spare' }).config;
  } catch (err) {
    logger.warn({ err: (err as Error).message }, 'no spare VM: the configuration cannot be read');
    return undefined;
  }
  if (!config.factory.spareVms) {
    logger.info({ config: configPath }, 'no spare VM: the configuration no longer asks for them ([factory] spare_vms)');
    return undefined;
  }
  const newHypervisor = () => createHypervisor({ ...config.hypervisor, ksm: config.runtime.ksm }, logger.child({ vm: 'spare' }));
  const templates = new VmTemplates(config.factory.templatePath, newHypervisor, config.agent, logger);
  // The daemon's metrics count the VM's agent calls once it is one (it installs its observer when claimed).
  const observeCall = (method: string, seconds: number, failed: boolean) => installedSandboxObserver().agentCall(method, seconds, failed);
  return WarmVm.start({ config, templates, newHypervisor, podVmConfig, observeCall, logger });
}
