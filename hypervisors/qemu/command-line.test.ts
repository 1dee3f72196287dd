import { InvalidArgumentError } from '../../lib/errors';
import { VmConfig } from '../hypervisor';
import { buildQemuArgs } from './command-line';

const base: VmConfig = {
  id: 'sb1',
  workDir: '/run/kata-ts/sb1',
  binaryPath: 'qemu-system-x86_64',
  accelerator: 'tcg',
  kernelPath: '/k',
  rootfs: { kind: 'initrd', path: '/i' },
  kernelParams: ['console=ttyS0', 'quiet'],
  memoryMiB: 512,
  vcpus: 2,
  agentChannel: { kind: 'virtio-serial', socketPath: '/run/kata-ts/sb1/agent.sock', portName: 'agent.channel.0' },
  sharedDirectories: [{ tag: 'kataShared', hostPath: '/run/kata-ts/sb1/shared' }],
};

function valueAfter(args: string[], flag: string): string[] {
  return args.flatMap((a, i) => (a === flag ? [args[i + 1]] : []));
}

describe('QEMU command line', () => {
  it('uses the configured accelerator and a matching CPU model', () => {
    expect(valueAfter(buildQemuArgs(base), '-machine')).toEqual(['q35,accel=tcg']);
    expect(valueAfter(buildQemuArgs(base), '-cpu')).toEqual(['max']);
    const kvm = buildQemuArgs({ ...base, accelerator: 'kvm' });
    expect(valueAfter(kvm, '-machine')).toEqual(['q35,accel=kvm']);
    expect(valueAfter(kvm, '-cpu')).toEqual(['host']);
  });

  it('caps the TCG translation buffer when asked, through -accel (which excludes -machine accel=); never under KVM', () => {
    const capped = buildQemuArgs(base, { tcgTbSizeMiB: 64 });
    expect(valueAfter(capped, '-accel')).toEqual(['tcg,tb-size=64']);
    expect(valueAfter(capped, '-machine')).toEqual(['q35']);
    expect(valueAfter(buildQemuArgs(base), '-accel')).toEqual([]);
    const kvm = buildQemuArgs({ ...base, accelerator: 'kvm' }, { tcgTbSizeMiB: 64 });
    expect(valueAfter(kvm, '-accel')).toEqual([]);
    expect(valueAfter(kvm, '-machine')).toEqual(['q35,accel=kvm']);
  });

  it('turns the guest PMU off when asked (Kata\'s cpu_features = "pmu=off"), under KVM and TCG', () => {
    expect(valueAfter(buildQemuArgs({ ...base, accelerator: 'kvm' }, { pmu: false }), '-cpu')).toEqual(['host,pmu=off']);
    expect(valueAfter(buildQemuArgs(base, { pmu: false }), '-cpu')).toEqual(['max,pmu=off']);
    expect(valueAfter(buildQemuArgs({ ...base, accelerator: 'kvm' }, { pmu: true }), '-cpu')).toEqual(['host']);
  });

  it('shares directories over virtio-9p by default, and over virtio-fs (vhost-user, shared guest RAM) when asked', () => {
    const p9 = buildQemuArgs(base);
    expect(valueAfter(p9, '-fsdev')).toEqual(['local,id=fs0,path=/run/kata-ts/sb1/shared,security_model=none,multidevs=remap']);
    expect(valueAfter(p9, '-object')).toEqual([]);
    const fs = buildQemuArgs(base, { virtioFs: { binaryPath: '/usr/lib/qemu/virtiofsd', cache: 'auto' } });
    expect(valueAfter(fs, '-fsdev')).toEqual([]);
    expect(valueAfter(fs, '-machine')).toEqual(['q35,accel=tcg,memory-backend=ram0']);
    expect(valueAfter(fs, '-object')).toEqual(['memory-backend-memfd,id=ram0,size=512M,share=on']);
    expect(valueAfter(fs, '-chardev')).toContain('socket,id=fs0,path=/run/kata-ts/sb1/virtiofsd-0.sock');
    expect(valueAfter(fs, '-device')).toContain('vhost-user-fs-pci,chardev=fs0,tag=kataShared,queue-size=1024');
    // Nothing shared: no daemon to map the RAM, so it stays private.
    expect(valueAfter(buildQemuArgs({ ...base, sharedDirectories: [] }, { virtioFs: { binaryPath: 'v', cache: 'auto' } }), '-object')).toEqual([]);
  });

  it('reaches the agent over hybrid vsock through vhost-device-vsock when asked: shared guest RAM, the relay switched on in the guest, the console on vsock', () => {
    const vsock: VmConfig = { ...base, agentChannel: { kind: 'hybrid-vsock', socketPath: '/run/kata-ts/sb1/vsock/vsock.sock', port: 1024 }, debugConsole: { socketPath: '/run/kata-ts/sb1/console.sock', portName: 'console.debug.0' } };
    const args = buildQemuArgs(vsock, { vsockBackend: '/opt/vhost-device-vsock' });
    expect(valueAfter(args, '-machine')).toEqual(['q35,accel=tcg,memory-backend=ram0']);
    expect(valueAfter(args, '-object')).toEqual(['memory-backend-memfd,id=ram0,size=512M,share=on']);
    expect(valueAfter(args, '-chardev')).toContain('socket,id=vsock,path=/run/kata-ts/sb1/vsock/vhost.sock');
    // Its id names it to QMP: the agent is dialled only once the guest started it (vsock-device-start.ts).
    expect(valueAfter(args, '-device')).toContain('vhost-user-vsock-pci,id=vsock0,chardev=vsock');
    // No virtio-serial port at all: the agent and the console are vsock ports 1024 and 1026.
    expect(valueAfter(args, '-device').filter((d) => d.startsWith('virtserialport') || d.startsWith('virtio-serial'))).toEqual([]);
    expect(valueAfter(args, '-append')).toEqual(['console=ttyS0 quiet katats.agent_vsock=1 katats.debug_console_vsock=1']);
    expect(valueAfter(buildQemuArgs({ ...vsock, debugConsole: undefined }, { vsockBackend: '/v' }), '-append')).toEqual(['console=ttyS0 quiet katats.agent_vsock=1']);
    // A backend maps at most 8 memory regions: boot RAM and 7 DIMMs (the read-only NVDIMM has a slot of its own).
    const growing = buildQemuArgs({ ...vsock, maxMemoryMiB: 2048, rootfs: { kind: 'image', path: '/r.img' } }, { vsockBackend: '/v' }, { rootfsImageBytes: 211 * 1024 * 1024 });
    expect(valueAfter(growing, '-m')).toEqual(['512M,slots=8,maxmem=2260M']);
    expect(() => buildQemuArgs(vsock)).toThrow('only through a vsock backend');
    expect(() => buildQemuArgs(base, { vsockBackend: '/v' })).toThrow('the agent channel is virtio-serial');
  });

  it('sets memory merging (KSM) only when asked, leaving QEMU\'s default otherwise', () => {
    expect(valueAfter(buildQemuArgs({ ...base, memoryMerge: true }), '-machine')).toEqual(['q35,accel=tcg,mem-merge=on']);
    expect(valueAfter(buildQemuArgs({ ...base, memoryMerge: false }), '-machine')).toEqual(['q35,accel=tcg,mem-merge=off']);
    expect(valueAfter(buildQemuArgs(base), '-machine')).toEqual(['q35,accel=tcg']);
  });

  it('sizes the VM and passes the kernel command line as one argument', () => {
    const args = buildQemuArgs(base);
    expect(valueAfter(args, '-m')).toEqual(['512M']);
    expect(valueAfter(args, '-smp')).toEqual(['2']);
    expect(valueAfter(args, '-append')).toEqual(['console=ttyS0 quiet']);
  });

  it('boots an initrd with no root parameters', () => {
    const args = buildQemuArgs(base);
    expect(valueAfter(args, '-initrd')).toEqual(['/i']);
    expect(valueAfter(args, '-object')).toEqual([]);
  });

  it('maps a rootfs image read-only as an unarmed NVDIMM and mounts it with DAX', () => {
    const args = buildQemuArgs({ ...base, rootfs: { kind: 'image', path: '/guest/rootfs,1.img' } }, {}, { rootfsImageBytes: 211 * 1024 * 1024 });
    expect(valueAfter(args, '-machine')).toEqual(['q35,accel=tcg,nvdimm=on']);
    expect(valueAfter(args, '-object')).toEqual(['memory-backend-file,id=rootfs,mem-path=/guest/rootfs,,1.img,size=221249536,share=on,readonly=on,align=2097152']);
    expect(valueAfter(args, '-device')).toContain('nvdimm,id=nv0,memdev=rootfs,unarmed=on');
    expect(valueAfter(args, '-initrd')).toEqual([]);
    // One slot for the NVDIMM; the device memory area holds it, rounded up to 2 MiB.
    expect(valueAfter(args, '-m')).toEqual(['512M,slots=1,maxmem=724M']);
    expect(valueAfter(args, '-append')).toEqual(['root=/dev/pmem0 rootfstype=ext4 rootflags=dax ro rootwait init=/init console=ttyS0 quiet']);
    expect(() => buildQemuArgs({ ...base, rootfs: { kind: 'image', path: '/r.img' } })).toThrow('rootfs image size is required');
  });

  it('leaves room for hot-plugged vCPUs and memory up to the limits', () => {
    const args = buildQemuArgs({ ...base, maxVcpus: 4, maxMemoryMiB: 2048 });
    expect(valueAfter(args, '-smp')).toEqual(['2,maxcpus=4']);
    expect(valueAfter(args, '-m')).toEqual(['512M,slots=8,maxmem=2048M']);
    // The NVDIMM takes a slot and room of its own beside the hot-plug room.
    const withImage = buildQemuArgs({ ...base, maxMemoryMiB: 2048, rootfs: { kind: 'image', path: '/r.img' } }, {}, { rootfsImageBytes: 211 * 1024 * 1024 });
    expect(valueAfter(withImage, '-m')).toEqual(['512M,slots=9,maxmem=2260M']);
  });

  it('refuses limits below the boot size', () => {
    expect(() => buildQemuArgs({ ...base, maxVcpus: 1 })).toThrow(new InvalidArgumentError('qemu: maxVcpus 1 is below the boot vcpus 2'));
    expect(() => buildQemuArgs({ ...base, maxMemoryMiB: 256 })).toThrow(new InvalidArgumentError('qemu: maxMemoryMiB 256 is below the boot memoryMiB 512'));
  });

  it('wires the agent over a named virtio-serial port on a host socket', () => {
    const args = buildQemuArgs(base);
    expect(valueAfter(args, '-chardev')).toContain('socket,id=agent,path=/run/kata-ts/sb1/agent.sock,server=on,wait=off');
    expect(valueAfter(args, '-device')).toContain('virtserialport,chardev=agent,name=agent.channel.0');
  });

  it('sends the guest console to QEMU\'s stdout (a pipe the driver reads), never to a file', () => {
    const args = buildQemuArgs(base);
    expect(valueAfter(args, '-chardev')).toContain('stdio,id=console,signal=off');
    expect(valueAfter(args, '-chardev').filter((c) => c.startsWith('file,'))).toEqual([]);
    expect(valueAfter(args, '-serial')).toEqual(['chardev:console']);
  });

  it('attaches one virtio NIC per pod tap, with the pod interface MAC', () => {
    expect(valueAfter(buildQemuArgs(base), '-netdev')).toEqual([]);
    const args = buildQemuArgs({ ...base, network: { netnsPath: '/var/run/netns/cni-1', nics: [{ tapName: 'tap0_kata', mac: '5a:1b:2c:3d:4e:5f' }] } });
    expect(valueAfter(args, '-netdev')).toEqual(['tap,id=net0,ifname=tap0_kata,script=no,downscript=no,vhost=off']);
    expect(valueAfter(args, '-device')).toContain('virtio-net-pci,netdev=net0,mac=5a:1b:2c:3d:4e:5f');
  });

  it('uses vhost-vsock when the channel is vsock', () => {
    const args = buildQemuArgs({ ...base, agentChannel: { kind: 'vsock', guestCid: 3, port: 1024 } });
    expect(valueAfter(args, '-device')).toContain('vhost-vsock-pci,id=vsock0,guest-cid=3');
    expect(args.join(' ')).not.toContain('virtserialport');
    expect(args.join(' ')).not.toContain('virtio-serial-pci');
  });

  it('shares directories over virtio-9p and escapes commas in paths', () => {
    const args = buildQemuArgs({ ...base, sharedDirectories: [{ tag: 'kataShared', hostPath: '/a,b' }] });
    expect(valueAfter(args, '-fsdev')).toEqual(['local,id=fs0,path=/a,,b,security_model=none,multidevs=remap']);
    expect(valueAfter(args, '-device')).toContain('virtio-9p-pci,fsdev=fs0,mount_tag=kataShared');
  });

  it('reserves PCIe root ports for hot-plug, each with its own chassis/slot pair', () => {
    const ports = (args: string[]) => valueAfter(args, '-device').filter((d) => d.startsWith('pcie-root-port'));
    expect(ports(buildQemuArgs(base))).toHaveLength(4);
    expect(ports(buildQemuArgs(base, { hotplugPorts: 2 }))).toEqual([
      'pcie-root-port,id=rp0,bus=pcie.0,chassis=1,slot=1',
      'pcie-root-port,id=rp1,bus=pcie.0,chassis=1,slot=2',
    ]);
    expect(ports(buildQemuArgs(base, { hotplugPorts: 0 }))).toEqual([]);
  });

  describe('templates and clones', () => {
    const template = { role: 'template' as const, memoryPath: '/var/lib/kata-ts/vm-templates/k/memory' };
    const clone = { role: 'clone' as const, memoryPath: template.memoryPath };

    it('maps the RAM file shared in the template and copy-on-write in a clone, with vmgenid in both', () => {
      const t = buildQemuArgs(base, {}, {}, template);
      const c = buildQemuArgs(base, {}, {}, clone);
      expect(valueAfter(t, '-machine')).toEqual(['q35,accel=tcg,memory-backend=ram0']);
      expect(valueAfter(t, '-object')).toEqual(['memory-backend-file,id=ram0,size=512M,mem-path=/var/lib/kata-ts/vm-templates/k/memory,share=on']);
      expect(valueAfter(c, '-object')).toEqual(['memory-backend-file,id=ram0,size=512M,mem-path=/var/lib/kata-ts/vm-templates/k/memory,share=off']);
      expect(valueAfter(t, '-device')).toContain('vmgenid,guid=auto');
      expect(valueAfter(c, '-device')).toContain('vmgenid,guid=auto');
      // A clone waits for the template's state; a template boots.
      expect(valueAfter(c, '-incoming')).toEqual(['defer']);
      expect(c).toContain('-S');
      expect(t).not.toContain('-incoming');
      expect(t).not.toContain('-S');
      expect(buildQemuArgs(base)).not.toContain('vmgenid,guid=auto');
    });

    it('gives a clone the same devices as its template: only host paths and the migration flags differ', () => {
      const elsewhere: VmConfig = { ...base, id: 'sb2', workDir: '/run/kata-ts/sb2', agentChannel: { kind: 'virtio-serial', socketPath: '/run/kata-ts/sb2/agent.sock', portName: 'agent.channel.0' } };
      const devices = (args: string[]) => valueAfter(args, '-device');
      expect(devices(buildQemuArgs(elsewhere, {}, {}, clone))).toEqual(devices(buildQemuArgs(base, {}, {}, template)));
    });

    it('refuses NICs on the command line (a clone gets them by hot-plug) and RAM a vhost-user backend must share', () => {
      const withNic: VmConfig = { ...base, network: { netnsPath: '/var/run/netns/p', nics: [{ tapName: 'tap0', mac: '0a:58:0a:58:00:05' }] } };
      expect(() => buildQemuArgs(withNic, {}, {}, clone)).toThrow('a template or clone VM boots without NICs');
      expect(() => buildQemuArgs(base, { virtioFs: { binary: '/usr/lib/qemu/virtiofsd', flavour: 'c', cache: 'auto' } as never }, {}, template)).toThrow(/virtio-fs maps the guest RAM/);
    });
  });
});
