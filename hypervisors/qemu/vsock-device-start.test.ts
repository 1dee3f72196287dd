import { createLogger, silentLogger } from '../../lib/logger';
import { PassThrough } from 'stream';
import { QmpExecutor, waitForVsockDeviceStart } from './vsock-device-start';

/** A QEMU whose guest starts the vsock device at its `startsAt`-th answer. */
function fakeQmp(startsAt: number, fail?: Error): QmpExecutor & { calls: Array<{ command: string; args?: Record<string, unknown> }> } {
  const calls: Array<{ command: string; args?: Record<string, unknown> }> = [];
  return {
    calls,
    async execute<T>(command: string, args?: Record<string, unknown>): Promise<T> {
      calls.push({ command, args });
      if (fail) throw fail;
      return { name: 'vhost-user-vsock', 'vhost-started': calls.length >= startsAt } as T;
    },
  };
}

const timing = { pollMs: 20, settleMs: 150 };

describe('waitForVsockDeviceStart', () => {
  it('asks QEMU about the vsock device until its vhost side started, then lets the backend settle', async () => {
    const qmp = fakeQmp(3);
    const started = performance.now();
    await waitForVsockDeviceStart(qmp, new AbortController().signal, silentLogger(), undefined, timing);
    expect(qmp.calls).toEqual(Array(3).fill({ command: 'x-query-virtio-status', args: { path: '/machine/peripheral/vsock0/virtio-backend' } }));
    // Two polls' pauses and the settling time.
    expect(performance.now() - started).toBeGreaterThanOrEqual(2 * timing.pollMs + timing.settleMs - 5);
  });

  it('stops asking when aborted (the VM is gone or the boot deadline passed)', async () => {
    const qmp = fakeQmp(Infinity);
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 100);
    await waitForVsockDeviceStart(qmp, abort.signal, silentLogger(), undefined, timing);
    const asked = qmp.calls.length;
    expect(asked).toBeGreaterThan(1);
    await new Promise((r) => setTimeout(r, 3 * timing.pollMs));
    expect(qmp.calls.length).toBe(asked);
  });

  it('does not wait on a QEMU that cannot answer the query, and says so', async () => {
    const out = new PassThrough();
    let logged = '';
    out.on('data', (chunk: Buffer) => (logged += chunk.toString()));
    const qmp = fakeQmp(1, new Error("qmp: The command x-query-virtio-status has not been found"));
    await waitForVsockDeviceStart(qmp, new AbortController().signal, createLogger(out, 'warn'), undefined, timing);
    expect(qmp.calls).toHaveLength(1);
    expect(logged).toContain('could not ask QEMU whether the guest started its vsock device; dialling the agent without waiting for it');
    expect(logged).toContain('x-query-virtio-status has not been found');
  });

  it('says nothing when the query failed because the VM is gone', async () => {
    const out = new PassThrough();
    let logged = '';
    out.on('data', (chunk: Buffer) => (logged += chunk.toString()));
    await waitForVsockDeviceStart(fakeQmp(1, new Error('qmp: connection closed')), new AbortController().signal, createLogger(out, 'warn'), () => true, timing);
    expect(logged).toBe('');
  });
});
