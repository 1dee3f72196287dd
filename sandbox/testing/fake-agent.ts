// A guest agent for host-side tests: our ttrpc server with the AgentService methods a
// test implements (GetGuestDetails answers unless the test overrides it), ready to
// serve any stream a fake VMM hands it. It records the calls it received.
import { silentLogger } from '../../lib/logger';
import { AGENT_SERVICE, lookupService } from '../../lib/protos';
import { ServiceImpl, TtrpcServer } from '../../ttrpc';
import { GuestDetails } from '../agent-client';

export const FAKE_GUEST: GuestDetails = { agent_version: 'fake-1', kernel_release: '6.1.0-fake', boot_id: 'b00t', oci_runtime: 'crun', features: [] };

export interface FakeAgent {
  server: TtrpcServer;
  /** Method names in the order the calls arrived. */
  calls: string[];
  /** Requests by method name, last one wins. */
  requests: Map<string, unknown>;
}

export function fakeAgent(impl: ServiceImpl = {}): FakeAgent {
  const calls: string[] = [];
  const requests = new Map<string, unknown>();
  const server = new TtrpcServer({ logger: silentLogger() });
  const handlers: ServiceImpl = { GetGuestDetails: () => FAKE_GUEST, ...impl };
  server.addService(
    lookupService(AGENT_SERVICE),
    Object.fromEntries(
      Object.entries(handlers).map(([method, handler]) => [
        method,
        (request: unknown, ...rest: unknown[]) => {
          calls.push(method);
          requests.set(method, request);
          return (handler as (...args: unknown[]) => unknown)(request, ...rest);
        },
      ]),
    ) as ServiceImpl,
  );
  return { server, calls, requests };
}
