// When the agent may be dialled over hybrid vsock (QEMU's vhost-user-vsock-pci served by
// vhost-device-vsock). Read in its source: vhost-device-vsock 0.3.0, the only version
// Debian has, accepts a host connection once it has the guest's memory table, and its
// handler for that connection's traffic then reads the guest's TX queue; before the
// queue is ready that read fails, the error ends the vring worker thread, and nothing
// says so: every later CONNECT goes unanswered until the boot timeout. Upstream fixed it
// after 0.3.0 (rust-vmm/vhost-device, "vsock: Access virtqueues only if they are ready").
// The window opens when the guest's vsock driver starts the device, about 1 s into a TCG
// boot, while the shim used to dial every 50 ms from QEMU's start. Twice in CI (never
// here, in some 150 boots) one pod's agent stayed unreachable for its whole boot timeout;
// this is the mechanism that fits.
//
// So the first dial waits until QEMU reports the device's vhost side started (QMP
// x-query-virtio-status: vhost-started; QEMU starts the device under its big lock, which
// a QMP command also needs, so by the time one sees it true QEMU has sent the backend
// every start-up message), and a little more for the backend to read them.
//
// Not gated: `kata-ts-runtime exec` dialling the debug console (vsock port 1026) of a VM
// still in its first second of boot could hit the same window (README says so).
import { Logger } from '../../lib/logger';
import { pause } from '../hybrid-vsock';
import { VSOCK_DEVICE_ID } from './command-line';
import { QmpClient } from './qmp';

const VSOCK_DEVICE_QOM_PATH = `/machine/peripheral/${VSOCK_DEVICE_ID}/virtio-backend`;
/** How often QEMU is asked while the guest's driver has not started the device. */
export const VSOCK_START_POLL_MS = 100;
/**
 * After vhost-started, for the backend to read the start-up messages QEMU already wrote:
 * a guess, not a measurement, meant to cover a busy host's scheduling delays.
 */
export const VSOCK_START_SETTLE_MS = 300;
/** One query's limit: a QEMU that does not answer within it is not waited for. */
const QUERY_TIMEOUT_MS = 5_000;

/**
 * Settles once the guest's vsock device has started and VSOCK_START_SETTLE_MS have
 * passed, or as soon as `signal` aborts (the VM is gone, or the boot deadline passed).
 * A QEMU that cannot answer the query (an older one, a wedged one) is logged and not
 * waited for: the agent is dialled as before. `vmGone` keeps a VM that exited out of the log.
 */
export async function waitForVsockDeviceStart(
  qmp: QmpClient,
  signal: AbortSignal,
  logger: Logger,
  vmGone: () => boolean = () => false,
  timing = { pollMs: VSOCK_START_POLL_MS, settleMs: VSOCK_START_SETTLE_MS },
): Promise<void> {
  const started = performance.now();
  while (!signal.aborted) {
    let status: { 'vhost-started'?: unknown };
    try {
      status = await qmp.execute<{ 'vhost-started'?: unknown }>('x-query-virtio-status', { path: VSOCK_DEVICE_QOM_PATH }, QUERY_TIMEOUT_MS);
    } catch (err) {
      if (!signal.aborted && !vmGone()) logger.warn({ err: (err as Error).message }, 'could not ask QEMU whether the guest started its vsock device; dialling the agent without waiting for it');
      return;
    }
    if (status['vhost-started'] === true) {
      logger.debug({ ms: Math.round(performance.now() - started) }, 'the guest started its vsock device');
      await pause(timing.settleMs, signal);
      return;
    }
    await pause(timing.pollMs, signal);
  }
}
