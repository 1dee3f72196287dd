// The shim's view of the guest agent: typed calls over ttrpc, with per-call deadlines
// for control calls and none for waits and stdio reads (they block by design).
import * as net from 'net';
import { DeadlineExceededError, NotImplementedError, ResourceExhaustedError, UnavailableError } from '../lib/errors';
import { Logger } from '../lib/logger';
import { AGENT_SERVICE, lookupService } from '../lib/protos';
import type { AgentServiceMethods, CallRequest, CallResponse, Decoded, katats } from '../lib/proto-types';
import { Code, TtrpcClient } from '../ttrpc';
import { AgentChannel, SharedFsKind } from '../hypervisors/hypervisor';
import { connectHybridVsock } from '../hypervisors/hybrid-vsock';
import { GuestDeviceRequest } from './devices';
import { IpAddress, Route } from './network';

/** The sandbox's shared filesystem as CreateSandbox names it. */
export interface GuestShare {
  tag: string;
  guestPath: string;
  kind: string;
}

export type NetInterface = {
  name: string;
  hw_addr: string;
  mtu: number;
  addresses: IpAddress[];
  /** Set for a NIC plugged before its pod (a spare's VM): the MAC the guest's NIC has now. */
  plugged_hw_addr?: string;
};

type Agent = katats.agent.v1.AgentService;

export type GuestDetails = Decoded<katats.agent.v1.IGuestDetails>;

/**
 * GetGuestMetrics as the guest answered it: the guest's word, to be checked before use
 * (decoding fixes only the types: a number may be NaN, negative or absurd).
 */
export type GuestMetricsReport = Decoded<katats.agent.v1.IGuestMetrics>;

/** Told of each control call's outcome (not of waits and reads, which block by design). */
export type AgentCallObserver = (method: string, seconds: number, failed: boolean) => void;

export interface AgentClient {
  guestDetails(timeoutMs?: number): Promise<GuestDetails>;
  createSandbox(req: { sandbox_id: string; hostname: string; shared_fs_tag: string; shared_dir_guest_path: string; shared_fs_type: SharedFsKind }): Promise<void>;
  destroySandbox(): Promise<void>;
  createContainer(req: { container_id: string; oci_spec_json: Buffer; stdin: boolean; terminal: boolean; devices?: GuestDeviceRequest[] }): Promise<void>;
  startContainer(containerId: string): Promise<number>;
  removeContainer(containerId: string): Promise<void>;
  waitProcess(containerId: string, execId: string): Promise<number>;
  signalProcess(containerId: string, execId: string, signal: number, all: boolean): Promise<void>;
  listProcesses(containerId: string): Promise<number[]>;
  readStdout(containerId: string, execId: string, maxLen: number): Promise<{ data: Buffer; eof: boolean }>;
  readStderr(containerId: string, execId: string, maxLen: number): Promise<{ data: Buffer; eof: boolean }>;
  writeStdin(containerId: string, execId: string, data: Buffer): Promise<number>;
  closeStdin(containerId: string, execId: string): Promise<void>;
  ttyWinResize(containerId: string, execId: string, columns: number, rows: number): Promise<void>;
  execProcess(req: { container_id: string; exec_id: string; process_json: Buffer; stdin: boolean; terminal: boolean }): Promise<number>;
  deleteProcess(containerId: string, execId: string): Promise<void>;
  pauseContainer(containerId: string): Promise<void>;
  resumeContainer(containerId: string): Promise<void>;
  updateContainer(containerId: string, resourcesJson: Buffer): Promise<void>;
  /** containerd metrics (cgroups v1 or v2 `Metrics`) packed as Any. */
  statsContainer(containerId: string): Promise<{ type_url: string; value: Buffer }>;
  /** Blocks until a container is OOM-killed; returns its id. */
  getOomEvent(): Promise<string>;
  /** Gives the guest NIC with `iface.hw_addr` the pod interface's name, MTU and addresses. */
  updateInterface(iface: NetInterface): Promise<void>;
  updateRoutes(routes: Route[]): Promise<void>;
  /** Onlines hot-plugged CPUs and memory, waiting until `want` is online; returns what is. */
  onlineCpuMem(want: { cpus: number; memoryMiB: number }): Promise<{ cpus: number; memoryMiB: number }>;
  /** The guest's memory, load and agent footprint, for the shim's metrics. */
  guestMetrics(timeoutMs?: number): Promise<GuestMetricsReport>;
  /** Sets the guest's wall clock (a clone wakes with its template's time). */
  setGuestDateTime(epochMs: number): Promise<void>;
  /** Runs what a pod's start runs in the guest once, in a VM no pod uses yet (a spare's), and removes it. */
  /** WarmUp; with `share`, the agent then also mounts it (and the pod's /dev/shm) for the CreateSandbox to come. */
  warmUp(timeoutMs: number, share?: GuestShare): Promise<void>;
  close(): void;
  /** Settles when the connection to the agent is lost. */
  readonly disconnected: Promise<void>;
}

const VM_EXITED = 'the VM exited before its agent answered';
/** The pause between two tries to reach a booting agent. */
const REDIAL_PAUSE_MS = 100;
/** A boot-time try's first wait for GetGuestDetails; doubled after each stuck-connection redial, up to the cap. */
const BOOT_TRY_TIMEOUT_MS = 3000;
const MAX_BOOT_TRY_TIMEOUT_MS = 30_000;
/**
 * Over hybrid vsock, unanswered tries on one connection before it is dialled anew. The
 * VMM acknowledges a connection only once the guest accepted it, and the guest relay
 * starts only after its agent listens, so an acknowledged connection that stays silent
 * is stuck somewhere on the way (a lost packet in the VMM's vsock device, a stuck relay
 * child), not waiting for a booting guest; a new connection takes a new path. Two
 * tries, so a merely slow guest is not abandoned at its first slow answer, and each
 * redial doubles the tries' wait, so a guest slower than any fixed wait still gets through.
 */
const SILENT_TRIES_BEFORE_REDIAL = 2;
/** GetGuestMetrics answers beyond this are refused undecoded (the guest's meminfo has ~60 entries). */
const GUEST_METRICS_MAX_BYTES = 64 * 1024;

/**
 * The host end of the agent channel, connected; `vmGone` aborts the wait. `timeoutMs`
 * is what is left of `bootTimeoutMs`, which the error names (the limit a person can change).
 */
async function openChannel(channel: AgentChannel, timeoutMs: number, bootTimeoutMs: number, vmGone: AbortSignal): Promise<net.Socket> {
  switch (channel.kind) {
    case 'virtio-serial':
      return new Promise<net.Socket>((resolve, reject) => {
        const s = net.createConnection(channel.socketPath);
        s.once('connect', () => resolve(s));
        s.once('error', (err) => reject(new UnavailableError(`cannot connect to the agent channel ${channel.socketPath}: ${err.message}`)));
      });
    case 'hybrid-vsock':
      try {
        return await connectHybridVsock(channel.socketPath, channel.port, timeoutMs, { signal: vmGone });
      } catch (err) {
        if (vmGone.aborted) throw new UnavailableError(VM_EXITED, { cause: err });
        if (err instanceof DeadlineExceededError) throw new DeadlineExceededError(`the guest agent did not answer within ${bootTimeoutMs} ms: ${err.message}`, { cause: err });
        throw err;
      }
    case 'vsock':
      // Node has no AF_VSOCK sockets; QEMU's agent channel is virtio-serial.
      throw new NotImplementedError(`agent channel vsock (guest CID ${channel.guestCid}) is not supported by this shim: use virtio-serial (QEMU) or hybrid vsock (Cloud Hypervisor, Firecracker)`);
  }
}

export class TtrpcAgentClient implements AgentClient {
  private readonly service = lookupService(AGENT_SERVICE);
  readonly disconnected: Promise<void>;
  /** Set once we close the connection ourselves: losses after that are expected. */
  private closing = false;
  /** Set once the agent answered: the boot-time polls are not calls worth timing. */
  private observeCall: AgentCallObserver | undefined;
  /** Set with observeCall: each call's time at debug level, to see where a pod's start goes. */
  private callLogger: Logger | undefined;

  constructor(private readonly client: TtrpcClient, private readonly callTimeoutMs: number) {
    this.disconnected = new Promise((resolve) => client.on('close', () => resolve()));
  }

  /** The stream id this connection's next call takes (ids below it were used). */
  get unusedStreamId(): number {
    return this.client.unusedStreamId;
  }

  /**
   * Dials the agent and waits until it answers, within `bootTimeoutMs` of the call or
   * until `vmExited` settles. The guest may still be booting. On virtio-serial the VMM
   * accepts the connection at once and the first requests sit in the channel until the
   * agent reads them, so we retry with short per-try deadlines; on hybrid vsock the VMM
   * refuses the connection until something in the guest listens, so the dialling itself
   * retries, and a connection the guest closes before its agent answered is dialled again.
   */
  static async connect(
    channel: AgentChannel,
    opts: {
      bootTimeoutMs: number;
      callTimeoutMs: number;
      vmExited: Promise<unknown>;
      logger: Logger;
      observeCall?: AgentCallObserver;
      firstTryTimeoutMs?: number;
      /** A template VM being made: its agent must not read (and so fix) the kernel's boot_id. */
      withoutBootId?: boolean;
      /** A clone continues its template's session with the agent: its calls take ids past the template's (ttrpc ClientOptions.firstStreamId). */
      firstStreamId?: number;
      /** Awaited before the first dial, within the boot deadline (Hypervisor.agentChannelReady). */
      channelReady?: (signal: AbortSignal) => Promise<void>;
    },
  ): Promise<{ agent: TtrpcAgentClient; details: GuestDetails }> {
    const deadline = Date.now() + opts.bootTimeoutMs;
    let vmGone = false;
    const vmGoneSignal = new AbortController();
    void opts.vmExited.then(() => {
      vmGone = true;
      vmGoneSignal.abort();
    });
    // Stream ids carry on across dials: over virtio-serial the agent's end of the channel
    // outlives the host's connection, and wants ids that increase.
    const dial = async (firstStreamId: number | undefined): Promise<{ agent: TtrpcAgentClient; lost: () => boolean }> => {
      const agent = new TtrpcAgentClient(new TtrpcClient(await openChannel(channel, Math.max(1, deadline - Date.now()), opts.bootTimeoutMs, vmGoneSignal.signal), { firstStreamId }), opts.callTimeoutMs);
      let lost = false;
      void agent.disconnected.then(() => (lost = true));
      return { agent, lost: () => lost };
    };
    if (opts.channelReady) {
      // Aborted at the deadline too: a channel that never gets ready ends in a timeout error that says so.
      const gate = new AbortController();
      const timer = setTimeout(() => gate.abort(), Math.max(0, deadline - Date.now()));
      const stop = (): void => gate.abort();
      vmGoneSignal.signal.addEventListener('abort', stop);
      try {
        await opts.channelReady(gate.signal);
      } catch (err) {
        // Only a hint of when to dial: without it, the dial goes ahead as it always could.
        opts.logger.warn({ err: (err as Error).message }, 'could not learn whether the agent channel is ready; dialling anyway');
      } finally {
        clearTimeout(timer);
        vmGoneSignal.signal.removeEventListener('abort', stop);
      }
      if (vmGone) throw new UnavailableError(VM_EXITED);
      if (gate.signal.aborted) throw new DeadlineExceededError(`the guest agent did not answer within ${opts.bootTimeoutMs} ms: its channel (${channel.kind}) never became ready to dial`);
    }
    let current = await dial(opts.firstStreamId);
    let attempt = 0;
    let silentTries = 0;
    let tryTimeoutMs = opts.firstTryTimeoutMs ?? BOOT_TRY_TIMEOUT_MS;
    while (!vmGone && Date.now() < deadline) {
      attempt++;
      try {
        const details = await current.agent.guestDetails(Math.min(tryTimeoutMs, Math.max(1, deadline - Date.now())), opts.withoutBootId);
        opts.logger.info({ attempt, channel: channel.kind, ...details }, 'agent ready');
        current.agent.observeCall = opts.observeCall;
        current.agent.callLogger = opts.logger;
        return { agent: current.agent, details };
      } catch (err) {
        opts.logger.debug({ attempt, err: (err as Error).message }, 'agent not ready yet');
        if (vmGone) break;
        if (err instanceof DeadlineExceededError) silentTries++;
      }
      // A failed try may have failed at once (the guest closed the connection): never
      // retry without a pause, or the loop would hold the event loop until the deadline.
      await new Promise((r) => setTimeout(r, REDIAL_PAUSE_MS));
      const stuck = channel.kind === 'hybrid-vsock' && silentTries >= SILENT_TRIES_BEFORE_REDIAL;
      if ((current.lost() || stuck) && !vmGone && Date.now() < deadline) {
        // Over vsock the guest may accept and then close (its relay gave up, or root in
        // the guest closed it), or accept and never answer: dial again rather than ask
        // a dead connection. (On virtio-serial there is only the one connection.)
        if (stuck) {
          opts.logger.info({ attempt, silentTries, tryTimeoutMs }, 'the agent accepted the vsock connection but did not answer on it; dialling again');
          tryTimeoutMs = Math.min(tryTimeoutMs * 2, MAX_BOOT_TRY_TIMEOUT_MS);
        }
        current.agent.close();
        current = await dial(current.agent.unusedStreamId);
        silentTries = 0;
      }
    }
    current.agent.close();
    if (vmGone) throw new UnavailableError(VM_EXITED);
    throw new DeadlineExceededError(`the guest agent did not answer within ${opts.bootTimeoutMs} ms`);
  }

  guestDetails(timeoutMs = this.callTimeoutMs, withoutBootId = false): Promise<GuestDetails> {
    return this.call('GetGuestDetails', withoutBootId ? { without_boot_id: true } : {}, timeoutMs);
  }
  async createSandbox(req: { sandbox_id: string; hostname: string; shared_fs_tag: string; shared_dir_guest_path: string; shared_fs_type: SharedFsKind }): Promise<void> {
    await this.call('CreateSandbox', req);
  }
  async destroySandbox(): Promise<void> {
    await this.call('DestroySandbox', {});
  }
  async createContainer(req: { container_id: string; oci_spec_json: Buffer; stdin: boolean; terminal: boolean; devices?: GuestDeviceRequest[] }): Promise<void> {
    await this.call('CreateContainer', req);
  }
  async startContainer(containerId: string): Promise<number> {
    return (await this.call('StartContainer', { container_id: containerId })).pid;
  }
  async removeContainer(containerId: string): Promise<void> {
    await this.call('RemoveContainer', { container_id: containerId });
  }
  async waitProcess(containerId: string, execId: string): Promise<number> {
    return (await this.call('WaitProcess', { container_id: containerId, exec_id: execId }, 0)).status;
  }
  async signalProcess(containerId: string, execId: string, signal: number, all: boolean): Promise<void> {
    await this.call('SignalProcess', { container_id: containerId, exec_id: execId, signal, all });
  }
  async listProcesses(containerId: string): Promise<number[]> {
    return (await this.call('ListProcesses', { container_id: containerId })).pids ?? [];
  }
  readStdout(containerId: string, execId: string, maxLen: number): Promise<{ data: Buffer; eof: boolean }> {
    return this.call('ReadStdout', { container_id: containerId, exec_id: execId, max_len: maxLen }, 0);
  }
  readStderr(containerId: string, execId: string, maxLen: number): Promise<{ data: Buffer; eof: boolean }> {
    return this.call('ReadStderr', { container_id: containerId, exec_id: execId, max_len: maxLen }, 0);
  }
  async writeStdin(containerId: string, execId: string, data: Buffer): Promise<number> {
    return (await this.call('WriteStdin', { container_id: containerId, exec_id: execId, data })).len;
  }
  async closeStdin(containerId: string, execId: string): Promise<void> {
    await this.call('CloseStdin', { container_id: containerId, exec_id: execId });
  }
  async ttyWinResize(containerId: string, execId: string, columns: number, rows: number): Promise<void> {
    await this.call('TtyWinResize', { container_id: containerId, exec_id: execId, columns, rows });
  }
  async execProcess(req: { container_id: string; exec_id: string; process_json: Buffer; stdin: boolean; terminal: boolean }): Promise<number> {
    return (await this.call('ExecProcess', req)).pid;
  }
  async deleteProcess(containerId: string, execId: string): Promise<void> {
    await this.call('DeleteProcess', { container_id: containerId, exec_id: execId });
  }
  async pauseContainer(containerId: string): Promise<void> {
    await this.call('PauseContainer', { container_id: containerId });
  }
  async resumeContainer(containerId: string): Promise<void> {
    await this.call('ResumeContainer', { container_id: containerId });
  }
  async updateContainer(containerId: string, resourcesJson: Buffer): Promise<void> {
    await this.call('UpdateContainer', { container_id: containerId, resources_json: resourcesJson });
  }
  statsContainer(containerId: string): Promise<{ type_url: string; value: Buffer }> {
    return this.call('StatsContainer', { container_id: containerId });
  }
  async updateInterface(iface: NetInterface): Promise<void> {
    await this.call('UpdateInterface', { interface: iface });
  }
  async updateRoutes(routes: Route[]): Promise<void> {
    await this.call('UpdateRoutes', { routes: { routes } });
  }
  async onlineCpuMem(want: { cpus: number; memoryMiB: number }): Promise<{ cpus: number; memoryMiB: number }> {
    const online = await this.call('OnlineCpuMem', { cpus: want.cpus, memory_mib: want.memoryMiB });
    return { cpus: online.online_cpus ?? 0, memoryMiB: online.online_memory_mib ?? 0 };
  }
  guestMetrics(timeoutMs = this.callTimeoutMs): Promise<GuestMetricsReport> {
    // An honest answer is a few KiB; a hostile one could make decoding it (a map of
    // hundreds of thousands of entries) block the shim for a second.
    return this.call('GetGuestMetrics', {}, timeoutMs, GUEST_METRICS_MAX_BYTES);
  }
  async setGuestDateTime(epochMs: number): Promise<void> {
    await this.call('SetGuestDateTime', { sec: Math.floor(epochMs / 1000), usec: Math.floor((epochMs % 1000) * 1000) });
  }
  async warmUp(timeoutMs: number, share?: GuestShare): Promise<void> {
    await this.call('WarmUp', share ? { shared_fs_tag: share.tag, shared_dir_guest_path: share.guestPath, shared_fs_type: share.kind } : {}, timeoutMs);
  }
  async getOomEvent(): Promise<string> {
    return (await this.call('GetOOMEvent', {}, 0)).container_id;
  }
  close(): void {
    this.closing = true;
    this.client.close();
  }

  /** timeoutMs 0 means no deadline (waits and reads): their time is the container's, not the agent's, so they are not observed. */
  private async call<M extends keyof AgentServiceMethods>(method: M, request: CallRequest<Agent, M>, timeoutMs = this.callTimeoutMs, maxResponseBytes?: number): Promise<CallResponse<Agent, M>> {
    const started = performance.now();
    const observe = (failed: boolean): void => {
      if (timeoutMs <= 0) return;
      const seconds = (performance.now() - started) / 1000;
      this.callLogger?.debug({ method, ms: Math.round(seconds * 10_000) / 10, failed }, 'agent call');
      try {
        this.observeCall?.(method, seconds, failed);
      } catch {
        // Metrics are not worth a call: its answer or error stands as it came.
      }
    };
    let answer: CallResponse<Agent, M>;
    try {
      // (CallRequest is a message interface; TypeScript cannot see it is an object while M is open.)
      answer = await this.client.call<CallResponse<Agent, M>>(this.service, method, request as object, { ...(timeoutMs > 0 ? { timeoutMs } : {}), maxResponseBytes });
    } catch (err) {
      observe(true);
      const code = (err as { code?: unknown }).code;
      if (!this.closing && code === Code.UNAVAILABLE) {
        throw new UnavailableError(`guest agent ${method}: connection to the agent was lost (the VM may have stopped)`, { cause: err });
      }
      if (code === Code.DEADLINE_EXCEEDED) {
        throw new DeadlineExceededError(`guest agent ${method}: no answer within ${timeoutMs} ms (the guest may be hung or overloaded; agent.callTimeoutMs sets the limit)`, { cause: err });
      }
      if (code === Code.RESOURCE_EXHAUSTED) {
        // Usually a reply over the ttrpc message limit, which the client skipped unread;
        // only this call fails, so say which one it was.
        throw new ResourceExhaustedError(`guest agent ${method}: ${(err as Error).message}`, { cause: err });
      }
      throw err;
    }
    observe(false);
    return answer;
  }
}
