import { Code, codeName, isCode } from './codes';

/** An RPC failure with a status code; what a client sees for a non-OK Response. */
export class TtrpcError extends Error {
  readonly code: Code;

  constructor(code: Code, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TtrpcError';
    this.code = code;
  }

  override toString(): string {
    return `${this.name}: ${codeName(this.code)}: ${this.message}`;
  }
}

export interface StatusLike {
  code: Code;
  message: string;
}

/**
 * Map anything a handler threw to a status:
 * - TtrpcError: its own code and message;
 * - an error carrying a numeric `grpcCode` (the project's typed error catalogue): that code;
 * - an abort caused by the call's own signal: the abort reason's code, else CANCELLED;
 * - anything else: UNKNOWN with the error's message.
 * An OK (0) or out-of-range code on a thrown error is treated as UNKNOWN.
 */
export function statusFromError(err: unknown, signal?: AbortSignal): StatusLike {
  if (err instanceof TtrpcError) {
    return { code: okToUnknown(err.code), message: err.message };
  }
  if (typeof err === 'object' && err !== null) {
    const e = err as { grpcCode?: unknown; message?: unknown; name?: unknown };
    const message = typeof e.message === 'string' ? e.message : String(err);
    if (typeof e.grpcCode === 'number') {
      return { code: isCode(e.grpcCode) ? okToUnknown(e.grpcCode) : Code.UNKNOWN, message };
    }
    if (signal?.aborted && (e.name === 'AbortError' || err === signal.reason)) {
      const reason: unknown = signal.reason;
      if (reason instanceof TtrpcError) return { code: okToUnknown(reason.code), message: reason.message };
      return { code: Code.CANCELLED, message };
    }
    return { code: Code.UNKNOWN, message };
  }
  return { code: Code.UNKNOWN, message: String(err) };
}

function okToUnknown(code: Code): Code {
  return code === Code.OK ? Code.UNKNOWN : code;
}
