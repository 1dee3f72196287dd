// When the agent is dialled over hybrid vsock, against a fake QMP server (testing/fake-qmp.ts).
import { capturedLogger } from '../../lib/testing/captured-logger';
import { FakeQmp, QmpAnswer, QmpCommand } from '../testing/fake-qmp';
import { QmpClient } from './qmp';
import { waitForVsockDeviceStart } from './vsock-device-start';

const timing = { pollMs: 20, settleMs: 150 };
const QUERY = { execute: 'x-query-virtio-status', arguments: { path: '/machine/peripheral/vsock0/virtio-backend' } };

describe('waitForVsockDeviceStart', () => {
  let fake: FakeQmp;
  let qmp: QmpClient;

  async function connect(answer: (command: QmpCommand) => QmpAnswer): Promise<void> {
    fake = await FakeQmp.start(answer);
    qmp = await QmpClient.connect(fake.socketPath, 2000);
  }
  /** A guest that starts the vsock device at QEMU's `startsAt`-th answer. */
  const startsAt = (n: number) => (): QmpAnswer => ({ return: { name: 'vhost-user-vsock', 'vhost-started': fake.commands.length >= n } });

  afterEach(async () => {
    qmp?.close();
    await fake?.close();
  });

  it('asks QEMU about the vsock device until its vhost side started, then lets the backend settle', async () => {
    await connect(startsAt(3));
    const started = performance.now();
    await waitForVsockDeviceStart(qmp, new AbortController().signal, capturedLogger().logger, undefined, timing);
    expect(fake.commands).toEqual([QUERY, QUERY, QUERY]);
    // Two polls' pauses and the settling time.
    expect(performance.now() - started).toBeGreaterThanOrEqual(2 * timing.pollMs + timing.settleMs - 5);
  });

  it('stops asking when aborted (the VM is gone or the boot deadline passed)', async () => {
    await connect(startsAt(Infinity));
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 100);
    await waitForVsockDeviceStart(qmp, abort.signal, capturedLogger().logger, undefined, timing);
    const asked = fake.commands.length;
    expect(asked).toBeGreaterThan(1);
    await new Promise((r) => setTimeout(r, 3 * timing.pollMs));
    expect(fake.commands.length).toBe(asked);
  });

  it('does not wait on a QEMU that cannot answer the query, and says so', async () => {
    await connect(() => ({ error: { class: 'CommandNotFound', desc: 'The command x-query-virtio-status has not been found' } }));
    const { logger, lines } = capturedLogger('warn');
    await waitForVsockDeviceStart(qmp, new AbortController().signal, logger, undefined, timing);
    expect(fake.commands).toEqual([QUERY]);
    expect(lines.map((l) => l.msg)).toEqual(['could not ask QEMU whether the guest started its vsock device; dialling the agent without waiting for it']);
    expect(String(lines[0].err)).toContain('x-query-virtio-status has not been found');
  });

  it('says nothing when the query failed because the VM is gone', async () => {
    await connect(() => ({ error: { class: 'GenericError', desc: 'QEMU is exiting' } }));
    const { logger, lines } = capturedLogger('warn');
    await waitForVsockDeviceStart(qmp, new AbortController().signal, logger, () => true, timing);
    expect(lines).toEqual([]);
  });
});
