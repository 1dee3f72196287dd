// The PCIe root ports QEMU reserves at boot (command-line.ts hotplugPortIds), shared by
// every kind of hot-plugged device: one device per port, q35 plugs nowhere else.
import { AlreadyExistsError, ResourceExhaustedError } from '../../lib/errors';

export class HotplugPorts {
  /** Device id → the root port it occupies. */
  private readonly portOf = new Map<string, string>();

  constructor(private readonly ports: string[]) {}

  has(deviceId: string): boolean {
    return this.portOf.has(deviceId);
  }

  /** A free port for `deviceId`, held until release(); `what` names the device in the errors. */
  take(deviceId: string, what: string): string {
    if (this.portOf.has(deviceId)) throw new AlreadyExistsError(`${what} is already plugged`);
    const used = new Set(this.portOf.values());
    const port = this.ports.find((p) => !used.has(p));
    if (!port) throw new ResourceExhaustedError(`${what}: all ${this.ports.length} hot-plug ports of the VM are in use`);
    this.portOf.set(deviceId, port);
    return port;
  }

  /** How many ports no device holds. */
  free(): number {
    return this.ports.length - this.portOf.size;
  }

  release(deviceId: string): void {
    this.portOf.delete(deviceId);
  }
}
