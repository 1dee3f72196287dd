// Features of the guest agent that a shim asks for in GuestDetails.features before it
// relies on them: the guest image may be older than the shim (a template made from it
// is, until the image changes), and an agent without them must still serve its pods.

/** UpdateInterface and UpdateRoutes run in the order they were sent: the shim need not wait for each answer. */
export const NETWORK_CALLS_IN_ORDER = 'network-calls-in-order';

/** UpdateInterface finds a NIC by plugged_hw_addr and gives it hw_addr: a NIC may be plugged before its pod. */
export const NIC_PLUGGED_AHEAD = 'nic-plugged-ahead';

/** What this agent has (the agent answers it; tests use it). */
export const AGENT_FEATURES = [NETWORK_CALLS_IN_ORDER, NIC_PLUGGED_AHEAD];

/** Whether the guest said it has `feature`. */
export function agentHas(details: { features?: string[] | null } | undefined, feature: string): boolean {
  return details?.features?.includes(feature) ?? false;
}
