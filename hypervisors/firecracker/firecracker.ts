// The Firecracker driver: starts `firecracker --api-sock`, configures the microVM over
// its REST API (boot-source, machine-config, drives, network-interfaces, vsock), then
// InstanceStart. Devices exist only from before the start (no hot-plug); pause and
// resume are PATCH /vm. Firecracker's stdout is the guest's serial console, kept in a
// file in workDir; the agent is reached over hybrid vsock (hypervisors/hybrid-vsock.ts).
import { FailedPreconditionError } from '../../lib/errors';
import { VmConfig, VmDevice } from '../hypervisor';
import { RestVmmDriver } from '../rest-vmm-driver';
import { requireGuestImage } from '../vm-requirements';
import { prepareWorkDir } from '../vmm-process';
import { FcInstanceState, FirecrackerApi } from './api';
import { buildFirecrackerPlan, firecrackerArgs, firecrackerPaths, VMM_NAME } from './vm-config';

const API_READY_TIMEOUT_MS = 10_000;

type Step = [name: string, run: () => Promise<void>];

export class Firecracker extends RestVmmDriver<FirecrackerApi> {
  readonly name = VMM_NAME;

  async start(config: VmConfig): Promise<void> {
    this.assertNotStarted(config);
    const plan = buildFirecrackerPlan(config, this.coldDevices);
    requireGuestImage(config);
    const paths = firecrackerPaths(config.workDir);
    prepareWorkDir(config.workDir, [paths.apiSocket, plan.vsock.uds_path]);
    const api = new FirecrackerApi(paths.apiSocket);
    const steps: Step[] = [
      ['PUT /boot-source', () => api.putBootSource(plan.bootSource)],
      ['PUT /machine-config', () => api.putMachineConfig(plan.machineConfig)],
      ...plan.drives.map((d): Step => [`PUT /drives/${d.drive_id}`, () => api.putDrive(d)]),
      ...plan.networkInterfaces.map((n): Step => [`PUT /network-interfaces/${n.iface_id}`, () => api.putNetworkInterface(n)]),
      ['PUT /vsock', () => api.putVsock(plan.vsock)],
      ['InstanceStart', () => api.instanceStart()],
    ];
    const vmmOptions = {
      name: VMM_NAME,
      binaryPath: config.binaryPath,
      args: firecrackerArgs(paths),
      logger: this.logger,
      stdoutFile: paths.consoleLog,
      netnsPath: config.network?.netnsPath,
    };
    await this.launch(vmmOptions, api, paths.consoleLog, async (vmm) => {
      const { vmm_version } = await vmm.waitForApi(() => api.describe(), API_READY_TIMEOUT_MS);
      this.logger.info({ version: vmm_version }, 'firecracker API ready');
      for (const [step, run] of steps) await vmm.guard(run(), step);
    });
  }

  async stop(graceMs: number): Promise<void> {
    if (!this.session) return;
    const { vmm, api } = this.session;
    // Firecracker has no "quit" call. On x86 Ctrl-Alt-Del makes the guest reboot, which
    // ends Firecracker after the guest flushed; elsewhere SIGTERM ends it at once.
    await vmm.stop(graceMs, async () => (process.arch === 'x64' ? api.sendCtrlAltDel() : vmm.signal('SIGTERM')));
  }

  async pause(): Promise<void> {
    await this.requireRunning().api.setVmState('Paused');
  }

  async resume(): Promise<void> {
    await this.requireRunning().api.setVmState('Resumed');
  }

  /** Firecracker takes drives and network interfaces before InstanceStart only. */
  async addDevice(device: VmDevice): Promise<void> {
    if (this.session) throw new FailedPreconditionError(`${VMM_NAME} cannot hot-plug devices: add ${device.kind} device ${device.id} before start()`);
    this.coldDevices.push(device);
  }

  /** The instance state as Firecracker reports it (GET /). */
  async vmState(): Promise<FcInstanceState> {
    return (await this.requireRunning().api.describe()).state;
  }
}
