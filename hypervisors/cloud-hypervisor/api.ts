// Cloud Hypervisor's REST API (HTTP over the --api-socket Unix socket, under /api/v1):
// the request bodies we send and the calls we make. The tests check every request
// against our description of the upstream OpenAPI file (hypervisors/testing/).
import { UnixHttpClient } from '../http-unix';

export type ClhConsoleMode = 'Off' | 'Pty' | 'Tty' | 'File' | 'Socket' | 'Null';

export interface ClhDiskConfig {
  path: string;
  readonly: boolean;
  id: string;
}

export interface ClhNetConfig {
  tap: string;
  mac?: string;
  id: string;
}

export interface ClhFsConfig {
  tag: string;
  socket: string;
  num_queues: number;
  queue_size: number;
}

export interface ClhVmConfig {
  payload: { kernel: string; initramfs?: string; cmdline: string };
  cpus: { boot_vcpus: number; max_vcpus: number };
  /**
   * Sizes in bytes. `shared` maps guest memory shared, which vhost-user (virtio-fs) needs;
   * `mergeable` lets the host's KSM merge it (off by default).
   */
  memory: { size: number; hotplug_size?: number; shared?: boolean; mergeable?: boolean };
  serial: { mode: ClhConsoleMode; file?: string };
  console: { mode: ClhConsoleMode };
  rng: { src: string };
  vsock: { cid: number; socket: string };
  disks?: ClhDiskConfig[];
  net?: ClhNetConfig[];
  fs?: ClhFsConfig[];
  /** virtio-pmem devices; `discard_writes` keeps the guest from changing the file. */
  pmem?: Array<{ file: string; discard_writes: boolean }>;
}

export interface ClhResize {
  desired_vcpus?: number;
  /** Bytes. */
  desired_ram?: number;
}

export type ClhVmState = 'Created' | 'Running' | 'Shutdown' | 'Paused' | 'BreakPoint';

export interface ClhVmInfo {
  config: ClhVmConfig;
  state: ClhVmState;
}

export interface ClhPing {
  version: string;
  build_version?: string;
  pid?: number;
}

/** What a hot-plugged device became in the guest. */
export interface ClhPciDeviceInfo {
  id: string;
  bdf: string;
}

const BASE = '/api/v1';
const REQUEST_TIMEOUT_MS = 30_000;

export class CloudHypervisorApi {
  private readonly http: UnixHttpClient;

  constructor(socketPath: string) {
    this.http = new UnixHttpClient(socketPath, { vmmName: 'cloud-hypervisor', timeoutMs: REQUEST_TIMEOUT_MS, errorDetail: clhErrorDetail });
  }

  ping(): Promise<ClhPing> {
    return this.http.get<ClhPing>(`${BASE}/vmm.ping`);
  }
  info(): Promise<ClhVmInfo> {
    return this.http.get<ClhVmInfo>(`${BASE}/vm.info`);
  }
  async createVm(config: ClhVmConfig): Promise<void> {
    await this.http.request('PUT', `${BASE}/vm.create`, config);
  }
  async bootVm(): Promise<void> {
    await this.http.request('PUT', `${BASE}/vm.boot`);
  }
  async pauseVm(): Promise<void> {
    await this.http.request('PUT', `${BASE}/vm.pause`);
  }
  async resumeVm(): Promise<void> {
    await this.http.request('PUT', `${BASE}/vm.resume`);
  }
  /** Stops the VM; the VMM process stays. */
  async shutdownVm(): Promise<void> {
    await this.http.request('PUT', `${BASE}/vm.shutdown`);
  }
  /** Ends the VMM process. */
  async shutdownVmm(): Promise<void> {
    await this.http.request('PUT', `${BASE}/vmm.shutdown`);
  }
  /** Undefined when added cold (answer 204, before boot). */
  addDisk(disk: ClhDiskConfig): Promise<ClhPciDeviceInfo | undefined> {
    return this.http.request<ClhPciDeviceInfo>('PUT', `${BASE}/vm.add-disk`, disk);
  }
  addNet(net: ClhNetConfig): Promise<ClhPciDeviceInfo | undefined> {
    return this.http.request<ClhPciDeviceInfo>('PUT', `${BASE}/vm.add-net`, net);
  }
  async resize(target: ClhResize): Promise<void> {
    await this.http.request('PUT', `${BASE}/vm.resize`, target);
  }
}

/** Cloud Hypervisor answers errors with its error chain, a JSON array of messages. */
function clhErrorDetail(body: unknown): string | undefined {
  return Array.isArray(body) && body.every((m) => typeof m === 'string') ? body.join(': ') : undefined;
}
