// `kata-ts-runtime metrics [--namespace NS] <sandbox-id>`: one sandbox's metrics in
// Prometheus text format, straight from its shim's management socket (as
// `kata-runtime metrics` does), without kata-ts-monitor's labels.
import { RuntimeConfig } from '../config/runtime-config';
import { FailedPreconditionError, NotFoundError } from '../lib/errors';
import { silentLogger } from '../lib/logger';
import { unixHttpGet } from '../lib/unix-http-get';
import { discoverSandboxes } from '../monitor/discovery';
import { validateId } from '../sandbox/identifiers';

const TIMEOUT_MS = 10_000;
const MAX_BYTES = 16 * 1024 * 1024;

/** The management socket of `sandboxId` (in `namespace`, when given) under the configuration's state dir. */
export function findManagementSocket(config: RuntimeConfig, sandboxId: string, namespace?: string): string {
  validateId('sandbox', sandboxId);
  // By the identity records, which also name sandboxes whose work dir is hashed.
  const matches = discoverSandboxes([config.runtime.stateDir], silentLogger()).filter((s) => s.identity.id === sandboxId && (!namespace || s.identity.namespace === namespace));
  if (matches.length === 0) {
    throw new NotFoundError(`sandbox ${sandboxId}${namespace ? ` in namespace ${namespace}` : ''} not found: no shim serves its metrics under ${config.runtime.stateDir} (runtime.state_dir)`);
  }
  if (matches.length > 1) throw new FailedPreconditionError(`sandbox ${sandboxId} exists in namespaces ${matches.map((m) => m.identity.namespace).sort().join(', ')}; name one with --namespace`);
  return matches[0].socket;
}

export function readSandboxMetrics(socket: string): Promise<string> {
  return unixHttpGet(socket, '/metrics', { timeoutMs: TIMEOUT_MS, maxBytes: MAX_BYTES });
}
