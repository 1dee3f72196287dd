// The QEMU driver's process handling against a fake qemu-system binary: a small node
// script that speaks enough QMP to be started and stopped, and prints what the test
// asks for on its stdout (where the guest console goes) and stderr.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { HypervisorError } from '../../lib/errors';
import { silentLogger } from '../../lib/logger';
import { VmConfig } from '../hypervisor';
import { QemuHypervisor } from './qemu';

interface FakeQemuBehaviour {
  /** Bytes of console noise printed before `consoleEnd`. */
  consoleBytes: number;
  consoleEnd: string;
  /** Bytes of stderr noise printed before `stderrEnd`. */
  stderrBytes: number;
  stderrEnd: string;
  /** Exit with this code after printing, before QMP ever listens (a start-up abort). */
  exitCode?: number;
}

/** The fake's whole program; its behaviour is baked in as JSON. */
function fakeQemuScript(behaviour: FakeQemuBehaviour): string {
  return `
const fs = require('fs');
const net = require('net');
const b = ${JSON.stringify(behaviour)};
const args = process.argv.slice(2);
function writeAll(fd, data) {
  for (let off = 0; off < data.length; ) {
    try {
      off += fs.writeSync(fd, data, off);
    } catch (err) {
      if (err.code !== 'EAGAIN') throw err;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1); // the reader is behind
    }
  }
}
function print(fd, noiseBytes, end) {
  const line = Buffer.from('x'.repeat(1023) + '\\n');
  for (let i = 0; i < noiseBytes; i += line.length) writeAll(fd, line.subarray(0, Math.min(line.length, noiseBytes - i)));
  writeAll(fd, Buffer.from(end));
}
print(1, b.consoleBytes, b.consoleEnd);
print(2, b.stderrBytes, b.stderrEnd);
if (b.exitCode !== undefined) process.exit(b.exitCode);
const qmp = args[args.indexOf('-qmp') + 1].replace(/^unix:/, '').split(',')[0];
net.createServer((socket) => {
  socket.write(JSON.stringify({ QMP: { version: {}, capabilities: [] } }) + '\\r\\n');
  let buffer = '';
  socket.on('data', (chunk) => {
    buffer += chunk;
    for (let nl; (nl = buffer.indexOf('\\n')) >= 0; buffer = buffer.slice(nl + 1)) {
      const command = JSON.parse(buffer.slice(0, nl));
      socket.write(JSON.stringify({ return: {} }) + '\\r\\n');
      if (command.execute === 'quit') socket.end(() => process.exit(0));
    }
  });
}).listen(qmp);
`;
}

describe('QemuHypervisor output handling (fake qemu binary)', () => {
  let dir: string;
  let n = 0;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qemu-driver-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  function vmConfig(behaviour: FakeQemuBehaviour): VmConfig {
    const binary = path.join(dir, `fake-qemu-${++n}`);
    fs.writeFileSync(binary, `#!${process.execPath}\n${fakeQemuScript(behaviour)}`, { mode: 0o755 });
    for (const file of ['vmlinux', 'initrd.img']) fs.writeFileSync(path.join(dir, file), '');
    const workDir = path.join(dir, 'vm');
    fs.mkdirSync(workDir, { recursive: true });
    return {
      id: 'fake',
      workDir,
      binaryPath: binary,
      accelerator: 'tcg',
      kernelPath: path.join(dir, 'vmlinux'),
      rootfs: { kind: 'initrd', path: path.join(dir, 'initrd.img') },
      kernelParams: [],
      memoryMiB: 128,
      vcpus: 1,
      agentChannel: { kind: 'virtio-serial', socketPath: path.join(workDir, 'agent.sock'), portName: 'agent.channel.0' },
      sharedDirectories: [],
    };
  }

  it('keeps only the end of a guest console that prints megabytes, in memory, not on disk', async () => {
    const end = 'katats-init: the last line\n';
    const config = vmConfig({ consoleBytes: 8 << 20, consoleEnd: end, stderrBytes: 0, stderrEnd: '' });
    const qemu = new QemuHypervisor(silentLogger());
    await qemu.start(config);
    try {
      for (const deadline = Date.now() + 30_000; !qemu.consoleTail().endsWith(end) && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
      const everything = qemu.consoleTail(Number.MAX_SAFE_INTEGER);
      expect(everything.endsWith(`x\n${end}`)).toBe(true);
      // All the driver holds of 8 MiB: its 128 KiB ring.
      expect(everything.length).toBe(128 * 1024);
      expect(qemu.consoleTail(10)).toBe(end.slice(-10));
      // The console reaches the shim through a pipe; nothing grows in the state dir.
      expect(fs.readdirSync(config.workDir).filter((f) => !f.endsWith('.sock'))).toEqual([]);
    } finally {
      await qemu.stop(0);
    }
    expect(qemu.pid()).toBeUndefined();
  });

  it('reports a start-up abort with the end of QEMU\'s stderr, bounded however much it printed', async () => {
    const reason = 'qemu-system-x86_64: -device foo: the reason a person can act on';
    const qemu = new QemuHypervisor(silentLogger());
    const err = await qemu.start(vmConfig({ consoleBytes: 0, consoleEnd: '', stderrBytes: 4 << 20, stderrEnd: `${reason}\n`, exitCode: 1 })).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(HypervisorError);
    const message = (err as Error).message;
    expect(message.startsWith('qemu exited during start-up: ')).toBe(true);
    expect(message.endsWith(reason)).toBe(true);
    expect(message.length).toBeLessThanOrEqual('qemu exited during start-up: '.length + 16 * 1024);
    expect(qemu.pid()).toBeUndefined();
  });
});
