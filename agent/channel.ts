// The agent's end of the host channel. On virtio-serial the port is a character
// device; a read returns 0 while no host is connected (QEMU's socket not yet dialled,
// or the shim reconnecting), which is not an end of stream: we wait and read again.
import * as fs from 'fs';
import * as path from 'path';
import { Duplex } from 'stream';

const HOST_ABSENT_RETRY_MS = 20;

export class CharDeviceStream extends Duplex {
  private readonly readBuffer = Buffer.alloc(64 * 1024);

  constructor(private readonly fd: number) {
    super();
  }

  override _read(): void {
    fs.read(this.fd, this.readBuffer, 0, this.readBuffer.length, null, (err, bytesRead) => {
      if (err) {
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN') {
          setTimeout(() => this._read(), HOST_ABSENT_RETRY_MS);
          return;
        }
        this.destroy(err);
        return;
      }
      if (bytesRead === 0) {
        setTimeout(() => this._read(), HOST_ABSENT_RETRY_MS);
        return;
      }
      this.push(Buffer.from(this.readBuffer.subarray(0, bytesRead)));
    });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    writeAll(this.fd, chunk, callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    fs.close(this.fd, () => callback(error));
  }
}

function writeAll(fd: number, chunk: Buffer, callback: (error?: Error | null) => void): void {
  fs.write(fd, chunk, 0, chunk.length, null, (err, written) => {
    if (err) return callback(err);
    if (written < chunk.length) return writeAll(fd, chunk.subarray(written), callback);
    callback();
  });
}

/** /dev path of the virtio-serial port with the given name, found through sysfs. */
export function findVirtioPort(portName: string, sysfsRoot = '/sys/class/virtio-ports'): string | undefined {
  let entries: string[];
  try {
    entries = fs.readdirSync(sysfsRoot);
  } catch {
    return undefined;
  }
  for (const entry of entries) {
    try {
      if (fs.readFileSync(path.join(sysfsRoot, entry, 'name'), 'utf8').trim() === portName) return path.join('/dev', entry);
    } catch {
      /* port without a name */
    }
  }
  return undefined;
}
