/**
 * Status codes carried in a ttrpc Response. ttrpc reuses the gRPC code space
 * (google.rpc.Code), so containerd maps them with the same errdefs rules it
 * applies to gRPC errors.
 */
export enum Code {
  OK = 0,
  CANCELLED = 1,
  UNKNOWN = 2,
  INVALID_ARGUMENT = 3,
  DEADLINE_EXCEEDED = 4,
  NOT_FOUND = 5,
  ALREADY_EXISTS = 6,
  PERMISSION_DENIED = 7,
  RESOURCE_EXHAUSTED = 8,
  FAILED_PRECONDITION = 9,
  ABORTED = 10,
  OUT_OF_RANGE = 11,
  UNIMPLEMENTED = 12,
  INTERNAL = 13,
  UNAVAILABLE = 14,
  DATA_LOSS = 15,
  UNAUTHENTICATED = 16,
}

/** Symbolic name of a code, e.g. `NOT_FOUND`; `CODE(42)` for values outside the enum. */
export function codeName(code: number): string {
  const name = (Code as unknown as Record<number, string | undefined>)[code];
  return typeof name === 'string' ? name : `CODE(${code})`;
}

/** True for an integer in the range of defined codes. */
export function isCode(value: unknown): value is Code {
  return typeof value === 'number' && Number.isInteger(value) && value >= Code.OK && value <= Code.UNAUTHENTICATED;
}
