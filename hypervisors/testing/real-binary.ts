// Runs a driver against the real binary, wherever it is on PATH (with /dev/kvm and a
// built guest). Elsewhere jest reports the test as skipped, the suite title saying why.
// Called from each driver's test file, so `jest --verbose` lists it beside the others.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { GUEST_KERNEL_PARAMS, Hypervisor } from '../hypervisor';
import { resolveExecutable } from '../vmm-process';

const GUEST_DIR = path.resolve(__dirname, '../../guest/out/current');
/** Printed by the guest's /init (guest/init) once it runs. */
const INIT_MARKER = 'katats-init: smoke check at';
const BOOT_TIMEOUT_MS = 60_000;

export interface PausableVmm extends Hypervisor {
  pause(): Promise<void>;
  resume(): Promise<void>;
  vmState(): Promise<string>;
}

function skipReason(binary: string): string | undefined {
  if (!resolveExecutable(binary)) return `${binary} is not on PATH`;
  try {
    fs.accessSync('/dev/kvm', fs.constants.R_OK | fs.constants.W_OK);
  } catch {
    return '/dev/kvm is not usable';
  }
  if (!fs.existsSync(path.join(GUEST_DIR, 'vmlinux'))) return `no guest image in ${GUEST_DIR} (run make guest)`;
  return undefined;
}

export function describeWithRealBinary(binary: string, create: () => PausableVmm): void {
  const reason = skipReason(binary);
  (reason ? describe.skip : describe)(`with the real ${binary}${reason ? ` (SKIPPED: ${reason})` : ''}`, () => {
    let workDir: string;
    beforeEach(() => (workDir = fs.mkdtempSync(path.join(os.tmpdir(), `real-${binary}-`))));
    afterEach(() => fs.rmSync(workDir, { recursive: true, force: true }));

    it(
      'boots the guest to its init, pauses and resumes it, and stops it',
      async () => {
        const vmm = create();
        await vmm.start({
          id: `real-${binary}`,
          workDir,
          binaryPath: binary,
          accelerator: 'kvm',
          kernelPath: path.join(GUEST_DIR, 'vmlinux'),
          rootfs: { kind: 'initrd', path: path.join(GUEST_DIR, 'initrd.img') },
          kernelParams: [...GUEST_KERNEL_PARAMS, 'katats.smoke=1'],
          memoryMiB: 512,
          vcpus: 1,
          agentChannel: { kind: 'hybrid-vsock', socketPath: path.join(workDir, 'vsock.sock'), port: 1024 },
          sharedDirectories: [],
        });
        try {
          await vmm.pause();
          expect(await vmm.vmState()).toBe('Paused');
          await vmm.resume();
          const deadline = Date.now() + BOOT_TIMEOUT_MS;
          while (!vmm.consoleTail(64 * 1024).includes(INIT_MARKER) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
          expect(vmm.consoleTail(64 * 1024)).toContain(INIT_MARKER);
        } finally {
          await vmm.stop(5000);
        }
        expect(vmm.pid()).toBeUndefined();
      },
      BOOT_TIMEOUT_MS + 20_000,
    );
  });
}
