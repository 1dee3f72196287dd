// A small typed CRI (runtime.v1) client for e2e tests: it talks to containerd's CRI
// plugin over the same unix socket and API kubelet uses, one method per RPC, each
// with a deadline. Failures are CriError, carrying the gRPC status code and details,
// so tests can assert on them (e.g. NotFound for an unknown container).
//
// Field names are the proto's own (keepCase), as in the rest of the project.

import * as fs from 'fs';
import * as path from 'path';
import * as grpc from '@grpc/grpc-js';
import * as protobuf from 'protobufjs';
import type * as T from './cri-types';

export * from './cri-types';

export const CRI_PACKAGE = 'runtime.v1';
const RUNTIME_SERVICE = `${CRI_PACKAGE}.RuntimeService`;
const IMAGE_SERVICE = `${CRI_PACKAGE}.ImageService`;

/** Default per-call deadline. A kata pod boots a VM (under TCG: tens of seconds). */
export const DEFAULT_CRI_TIMEOUT_MS = 120_000;

export interface CallOptions {
  /** Deadline for this call; default: the client's. */
  timeoutMs?: number;
}

export interface CriClientOptions {
  /** Deadline for every call that does not give its own; default DEFAULT_CRI_TIMEOUT_MS. */
  timeoutMs?: number;
}

/** A failed CRI call: the gRPC status, plus which RPC failed. */
export class CriError extends Error {
  override readonly name = 'CriError';
  constructor(
    /** e.g. "RunPodSandbox". */
    readonly rpc: string,
    /** Numeric gRPC status code (grpc.status). */
    readonly code: grpc.status,
    /** The server's message, e.g. `no runtime for "x" is configured`. */
    readonly details: string,
  ) {
    super(`CRI ${rpc} failed: ${grpc.status[code] ?? code} (${code}): ${details}`);
  }

  /** Name of the status code: "NotFound", "Unknown", "DeadlineExceeded"... */
  get codeName(): string {
    const upper = grpc.status[this.code] ?? String(this.code);
    return upper.toLowerCase().replace(/(^|_)([a-z])/g, (_m, _u: string, c: string) => c.toUpperCase());
  }
}

export class CriClient {
  private readonly client: grpc.Client;
  private readonly timeoutMs: number;

  /** `socket` is a path (containerd's gRPC socket, e.g. PrivateContainerd.address). */
  constructor(readonly socket: string, opts: CriClientOptions = {}) {
    this.client = new grpc.Client(`unix://${path.resolve(socket)}`, grpc.credentials.createInsecure());
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_CRI_TIMEOUT_MS;
  }

  /** Closes the channel; without it an open channel can keep jest from exiting. */
  close(): void {
    this.client.close();
  }

  // ---- RuntimeService ----

  version(opts?: CallOptions): Promise<T.VersionResponse> {
    return this.call(RUNTIME_SERVICE, 'Version', { version: CRI_PACKAGE }, opts);
  }

  status(req: { verbose?: boolean } = {}, opts?: CallOptions): Promise<T.StatusResponse> {
    return this.call(RUNTIME_SERVICE, 'Status', req, opts);
  }

  runPodSandbox(req: T.RunPodSandboxRequest, opts?: CallOptions): Promise<{ pod_sandbox_id: string }> {
    return this.call(RUNTIME_SERVICE, 'RunPodSandbox', req, opts);
  }

  async stopPodSandbox(req: { pod_sandbox_id: string }, opts?: CallOptions): Promise<void> {
    await this.call(RUNTIME_SERVICE, 'StopPodSandbox', req, opts);
  }

  async removePodSandbox(req: { pod_sandbox_id: string }, opts?: CallOptions): Promise<void> {
    await this.call(RUNTIME_SERVICE, 'RemovePodSandbox', req, opts);
  }

  podSandboxStatus(req: { pod_sandbox_id: string; verbose?: boolean }, opts?: CallOptions): Promise<T.PodSandboxStatusResponse> {
    return this.call(RUNTIME_SERVICE, 'PodSandboxStatus', req, opts);
  }

  listPodSandbox(req: { filter?: T.PodSandboxFilter } = {}, opts?: CallOptions): Promise<{ items: T.PodSandbox[] }> {
    return this.call(RUNTIME_SERVICE, 'ListPodSandbox', req, opts);
  }

  createContainer(req: T.CreateContainerRequest, opts?: CallOptions): Promise<{ container_id: string }> {
    return this.call(RUNTIME_SERVICE, 'CreateContainer', req, opts);
  }

  async startContainer(req: { container_id: string }, opts?: CallOptions): Promise<void> {
    await this.call(RUNTIME_SERVICE, 'StartContainer', req, opts);
  }

  /** `timeout` is in seconds (grace period before SIGKILL). */
  async stopContainer(req: { container_id: string; timeout?: number }, opts?: CallOptions): Promise<void> {
    await this.call(RUNTIME_SERVICE, 'StopContainer', req, opts);
  }

  async removeContainer(req: { container_id: string }, opts?: CallOptions): Promise<void> {
    await this.call(RUNTIME_SERVICE, 'RemoveContainer', req, opts);
  }

  listContainers(req: { filter?: T.ContainerFilter } = {}, opts?: CallOptions): Promise<{ containers: T.Container[] }> {
    return this.call(RUNTIME_SERVICE, 'ListContainers', req, opts);
  }

  containerStatus(req: { container_id: string; verbose?: boolean }, opts?: CallOptions): Promise<T.ContainerStatusResponse> {
    return this.call(RUNTIME_SERVICE, 'ContainerStatus', req, opts);
  }

  /**
   * `timeout` is in seconds and enforced by containerd (0 = none). The call's own
   * deadline defaults to that plus 30 s, so containerd's answer wins when both apply.
   */
  execSync(req: { container_id: string; cmd: string[]; timeout?: number }, opts?: CallOptions): Promise<T.ExecSyncResponse> {
    const timeoutMs = opts?.timeoutMs ?? (req.timeout ? req.timeout * 1000 + 30_000 : undefined);
    return this.call(RUNTIME_SERVICE, 'ExecSync', req, { timeoutMs });
  }

  /**
   * The streaming URL for forwarding `port`s of the pod (containerd dials them inside the
   * pod's network namespace once a client connects: cri-portforward.ts).
   */
  portForward(req: { pod_sandbox_id: string; port: number[] }, opts?: CallOptions): Promise<{ url: string }> {
    return this.call(RUNTIME_SERVICE, 'PortForward', req, opts);
  }

  containerStats(req: { container_id: string }, opts?: CallOptions): Promise<{ stats: T.ContainerStats | null }> {
    return this.call(RUNTIME_SERVICE, 'ContainerStats', req, opts);
  }

  // ---- ImageService ----

  listImages(req: { filter?: { image?: T.ImageSpec } } = {}, opts?: CallOptions): Promise<{ images: T.Image[] }> {
    return this.call(IMAGE_SERVICE, 'ListImages', req, opts);
  }

  imageStatus(req: { image: T.ImageSpec; verbose?: boolean }, opts?: CallOptions): Promise<T.ImageStatusResponse> {
    return this.call(IMAGE_SERVICE, 'ImageStatus', req, opts);
  }

  // ---- plumbing ----

  private call<Res>(service: string, method: string, request: object, opts: CallOptions = {}): Promise<Res> {
    const { requestType, responseType } = methodTypes(service, method);
    const deadline = Date.now() + (opts.timeoutMs ?? this.timeoutMs);
    return new Promise<Res>((resolve, reject) => {
      this.client.makeUnaryRequest(
        `/${service}/${method}`,
        (msg: object) => Buffer.from(requestType.encode(requestType.fromObject(msg)).finish()),
        (bytes: Buffer) => responseType.toObject(responseType.decode(bytes), DECODE_OPTIONS) as Res,
        request,
        new grpc.Metadata(),
        { deadline },
        (err, value) => {
          if (err) reject(new CriError(method, err.code, err.details || err.message));
          else resolve(value as Res);
        },
      );
    });
  }
}

/** See cri-types.ts for what these give the caller. */
const DECODE_OPTIONS: protobuf.IConversionOptions = {
  longs: Number,
  enums: String,
  defaults: true,
  arrays: true,
  objects: true,
};

let root: protobuf.Root | undefined;

/** protos/cri/api.proto, loaded once (keepCase: the proto's own field names). */
export function criProtoRoot(): protobuf.Root {
  if (!root) {
    root = new protobuf.Root();
    root.loadSync(criProtoPath(), { keepCase: true });
    root.resolveAll();
  }
  return root;
}

function methodTypes(service: string, method: string): { requestType: protobuf.Type; responseType: protobuf.Type } {
  const m = criProtoRoot().lookupService(service).methods[method];
  if (!m?.resolvedRequestType || !m.resolvedResponseType) throw new Error(`${service}/${method} is not in protos/cri/api.proto`);
  return { requestType: m.resolvedRequestType, responseType: m.resolvedResponseType };
}

/** protos/cri/api.proto above this module, from the sources (ts-jest) or from dist/. */
function criProtoPath(): string {
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'protos', 'cri', 'api.proto');
    if (fs.existsSync(candidate)) return candidate;
  }
  throw new Error(`protos/cri/api.proto not found above ${__dirname}`);
}
