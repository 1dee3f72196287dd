// One error catalogue for the shim and the agent. Each kind carries the gRPC status
// code it becomes at the RPC boundary (`grpcCode`, read by our ttrpc server), so
// handlers throw domain errors and never pick status codes themselves.

export const GrpcCode = {
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;
export type GrpcCodeValue = (typeof GrpcCode)[keyof typeof GrpcCode];

export abstract class KataError extends Error {
  abstract readonly grpcCode: GrpcCodeValue;
  /** Stable machine-readable identifier, e.g. 'ERR_NOT_FOUND'. */
  abstract readonly code: string;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class NotFoundError extends KataError {
  readonly grpcCode = GrpcCode.NOT_FOUND;
  readonly code = 'ERR_NOT_FOUND';
}
export class AlreadyExistsError extends KataError {
  readonly grpcCode = GrpcCode.ALREADY_EXISTS;
  readonly code = 'ERR_ALREADY_EXISTS';
}
export class InvalidArgumentError extends KataError {
  readonly grpcCode = GrpcCode.INVALID_ARGUMENT;
  readonly code = 'ERR_INVALID_ARGUMENT';
}
export class FailedPreconditionError extends KataError {
  readonly grpcCode = GrpcCode.FAILED_PRECONDITION;
  readonly code = 'ERR_FAILED_PRECONDITION';
}
export class ResourceExhaustedError extends KataError {
  readonly grpcCode = GrpcCode.RESOURCE_EXHAUSTED;
  readonly code = 'ERR_RESOURCE_EXHAUSTED';
}
export class NotImplementedError extends KataError {
  readonly grpcCode = GrpcCode.UNIMPLEMENTED;
  readonly code = 'ERR_NOT_IMPLEMENTED';
}
export class UnavailableError extends KataError {
  readonly grpcCode = GrpcCode.UNAVAILABLE;
  readonly code = 'ERR_UNAVAILABLE';
}
export class DeadlineExceededError extends KataError {
  readonly grpcCode = GrpcCode.DEADLINE_EXCEEDED;
  readonly code = 'ERR_DEADLINE_EXCEEDED';
}
/** The hypervisor could not be started or driven (missing binary, QMP failure...). */
export class HypervisorError extends KataError {
  readonly grpcCode = GrpcCode.UNAVAILABLE;
  readonly code = 'ERR_HYPERVISOR';
}
/** A VM template's saved state could not be loaded into a clone: the template itself is bad. */
export class TemplateRestoreError extends HypervisorError {}
/**
 * An OCI hook the shim ran on the host failed: it exited non-zero, was killed at its
 * timeout, could not be started, or named a file the guest can write. Its kind, path
 * and exit status (a number, a signal name, or an errno code) are kept for callers.
 */
export class HookFailedError extends KataError {
  readonly grpcCode = GrpcCode.FAILED_PRECONDITION;
  readonly code = 'ERR_HOOK_FAILED';
  constructor(readonly hook: { kind: string; path: string }, readonly exitStatus: number | string | undefined, message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
export class InternalError extends KataError {
  readonly grpcCode = GrpcCode.INTERNAL;
  readonly code = 'ERR_INTERNAL';
}

/** The gRPC code an arbitrary thrown value maps to. */
export function grpcCodeOf(err: unknown): number {
  if (err && typeof err === 'object') {
    const e = err as { grpcCode?: unknown; code?: unknown };
    if (typeof e.grpcCode === 'number') return e.grpcCode;
    // A TtrpcError from a downstream call (the agent) carries a numeric code: keep it,
    // so a NotFound in the guest stays a NotFound for containerd.
    if (typeof e.code === 'number') return e.code;
  }
  return GrpcCode.UNKNOWN;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
