// Firecracker's REST API (HTTP over the --api-sock Unix socket): the request bodies we
// send and the calls we make. The tests check every request against our description
// of the upstream Swagger file (hypervisors/testing/).
import { UnixHttpClient } from '../http-unix';

export interface FcBootSource {
  kernel_image_path: string;
  initrd_path: string;
  boot_args: string;
}

export interface FcMachineConfig {
  vcpu_count: number;
  mem_size_mib: number;
}

export interface FcDrive {
  drive_id: string;
  path_on_host: string;
  is_root_device: boolean;
  is_read_only: boolean;
}

export interface FcNetworkInterface {
  iface_id: string;
  host_dev_name: string;
  guest_mac?: string;
}

export interface FcVsock {
  guest_cid: number;
  uds_path: string;
}

export type FcInstanceState = 'Not started' | 'Running' | 'Paused';

export interface FcInstanceInfo {
  app_name: string;
  id: string;
  state: FcInstanceState;
  vmm_version: string;
}

const REQUEST_TIMEOUT_MS = 30_000;

export class FirecrackerApi {
  private readonly http: UnixHttpClient;

  constructor(socketPath: string) {
    this.http = new UnixHttpClient(socketPath, { vmmName: 'firecracker', timeoutMs: REQUEST_TIMEOUT_MS, errorDetail: fcErrorDetail });
  }

  describe(): Promise<FcInstanceInfo> {
    return this.http.get<FcInstanceInfo>('/');
  }
  async putBootSource(body: FcBootSource): Promise<void> {
    await this.http.request('PUT', '/boot-source', body);
  }
  async putMachineConfig(body: FcMachineConfig): Promise<void> {
    await this.http.request('PUT', '/machine-config', body);
  }
  async putDrive(body: FcDrive): Promise<void> {
    await this.http.request('PUT', `/drives/${encodeURIComponent(body.drive_id)}`, body);
  }
  async putNetworkInterface(body: FcNetworkInterface): Promise<void> {
    await this.http.request('PUT', `/network-interfaces/${encodeURIComponent(body.iface_id)}`, body);
  }
  async putVsock(body: FcVsock): Promise<void> {
    await this.http.request('PUT', '/vsock', body);
  }
  async instanceStart(): Promise<void> {
    await this.http.request('PUT', '/actions', { action_type: 'InstanceStart' });
  }
  /** Asks the guest to reboot (x86 only); Firecracker exits when the guest resets. */
  async sendCtrlAltDel(): Promise<void> {
    await this.http.request('PUT', '/actions', { action_type: 'SendCtrlAltDel' });
  }
  async setVmState(state: 'Paused' | 'Resumed'): Promise<void> {
    await this.http.request('PATCH', '/vm', { state });
  }
}

/** Firecracker answers errors as {"fault_message": "..."}. */
function fcErrorDetail(body: unknown): string | undefined {
  const message = (body as { fault_message?: unknown } | null)?.fault_message;
  return typeof message === 'string' ? message : undefined;
}
