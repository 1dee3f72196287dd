// The guest's vsock ports, Kata's numbers: the shim dials them, the guest's relay
// listens on them for the agent (agent/main.ts, guest/vsock-relay.c).

/** The agent's ttrpc service. */
export const AGENT_VSOCK_PORT = 1024;
/** The debug console (a root shell), when the sandbox has one. */
export const DEBUG_CONSOLE_VSOCK_PORT = 1026;
