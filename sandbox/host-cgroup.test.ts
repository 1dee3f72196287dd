import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { cgroupRelativePath, HostCgroups, removeCreated, SandboxCgroup } from './host-cgroup';

const MiB = 1024 * 1024;

/** A directory laid out like cgroupfs: v1 (one hierarchy per controller) or v2 (one tree). */
function fakeCgroupfs(version: 1 | 2): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), `cgfs-v${version}-`));
  if (version === 2) {
    fs.writeFileSync(path.join(root, 'cgroup.controllers'), 'cpu memory pids');
    fs.writeFileSync(path.join(root, 'cgroup.procs'), '');
  } else {
    for (const c of ['memory', 'cpu', 'cpuacct', 'pids', 'blkio', 'cpuset']) {
      fs.mkdirSync(path.join(root, c));
      fs.writeFileSync(path.join(root, c, 'cgroup.procs'), '');
    }
    fs.writeFileSync(path.join(root, 'memory', 'memory.limit_in_bytes'), '9223372036854771712');
  }
  return root;
}

describe('the sandbox cgroup on the host', () => {
  const roots: string[] = [];
  afterAll(() => roots.forEach((r) => fs.rmSync(r, { recursive: true, force: true })));

  it('reads cgroupfs paths as they are and systemd slice:prefix:name as runc lays it out', () => {
    expect(cgroupRelativePath('/kubepods/burstable/pod1/sb1')).toBe('kubepods/burstable/pod1/sb1');
    expect(cgroupRelativePath('kubepods-burstable-pod1.slice:cri-containerd:sb1')).toBe('kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-sb1.scope');
    expect(() => cgroupRelativePath('/kubepods/../../etc')).toThrow('does not name a cgroup below the root');
    expect(() => cgroupRelativePath('/')).toThrow('does not name a cgroup below the root');
  });

  it('on v1: makes the leaf in each accounting hierarchy (not cpuset), joins a pid, finds the tightest limits above, removes only its leaf', () => {
    const root = fakeCgroupfs(1);
    roots.push(root);
    const host = new HostCgroups(root);
    expect(host.unified).toBe(false);
    expect(host.hierarchies().map((h) => path.basename(h))).toEqual(['memory', 'cpu', 'cpuacct', 'pids', 'blkio']);
    // kubelet's pod level, above the sandbox's own cgroup: 2 GiB and 1.5 CPUs.
    fs.mkdirSync(path.join(root, 'memory', 'kubepods', 'pod1'), { recursive: true });
    fs.writeFileSync(path.join(root, 'memory', 'kubepods', 'memory.limit_in_bytes'), String(8192 * MiB));
    fs.writeFileSync(path.join(root, 'memory', 'kubepods', 'pod1', 'memory.limit_in_bytes'), String(2048 * MiB));
    fs.mkdirSync(path.join(root, 'cpu', 'kubepods', 'pod1'), { recursive: true });
    fs.writeFileSync(path.join(root, 'cpu', 'kubepods', 'pod1', 'cpu.cfs_quota_us'), '150000');
    fs.writeFileSync(path.join(root, 'cpu', 'kubepods', 'pod1', 'cpu.cfs_period_us'), '100000');

    const cgroup = SandboxCgroup.create(host, 'kubepods/pod1/sb1');
    expect(cgroup.created).toEqual(host.hierarchies().map((h) => path.join(h, 'kubepods/pod1/sb1')));
    expect(fs.existsSync(path.join(root, 'cpuset', 'kubepods'))).toBe(false);
    expect(cgroup.limits()).toEqual({ memoryBytes: 2048 * MiB, cpus: 1.5 });
    cgroup.join(4242);
    expect(fs.readFileSync(path.join(root, 'pids', 'kubepods/pod1/sb1', 'cgroup.procs'), 'utf8')).toBe('4242');

    // A fake cgroupfs keeps the files the kernel would drop; the real rmdir would then succeed.
    for (const dir of cgroup.created) fs.rmSync(path.join(dir, 'cgroup.procs'));
    expect(cgroup.remove()).toEqual([]);
    expect(fs.existsSync(path.join(root, 'memory', 'kubepods', 'pod1', 'sb1'))).toBe(false);
    // The parents stay: kubelet owns the pod level.
    expect(fs.existsSync(path.join(root, 'memory', 'kubepods', 'pod1'))).toBe(true);
  });

  it('on v2: one tree, memory.max and cpu.max', () => {
    const root = fakeCgroupfs(2);
    roots.push(root);
    const host = new HostCgroups(root);
    expect(host.unified).toBe(true);
    fs.mkdirSync(path.join(root, 'kubepods', 'pod2'), { recursive: true });
    fs.writeFileSync(path.join(root, 'kubepods', 'memory.max'), 'max');
    fs.writeFileSync(path.join(root, 'kubepods', 'pod2', 'memory.max'), String(512 * MiB));
    fs.writeFileSync(path.join(root, 'kubepods', 'pod2', 'cpu.max'), '200000 100000');
    const cgroup = SandboxCgroup.create(host, 'kubepods/pod2/sb2');
    expect(cgroup.created).toEqual([path.join(root, 'kubepods/pod2/sb2')]);
    expect(cgroup.limits()).toEqual({ memoryBytes: 512 * MiB, cpus: 2 });
    const procFile = path.join(root, 'proc-cgroup');
    fs.writeFileSync(procFile, '0::/system.slice/containerd.service\n');
    expect(host.cgroupsOf('self', procFile)).toEqual(new Map([[root, '/system.slice/containerd.service']]));
  });

  it("a cgroup that already existed is not this sandbox's to remove", () => {
    const root = fakeCgroupfs(2);
    roots.push(root);
    fs.mkdirSync(path.join(root, 'taken'));
    expect(SandboxCgroup.create(new HostCgroups(root), 'taken').created).toEqual([]);
    expect(removeCreated([path.join(root, 'gone')])).toEqual([]);
  });
});
