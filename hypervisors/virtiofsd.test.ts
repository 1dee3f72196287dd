import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { processStartTime } from '../lib/recorded-process';
import { runBounded } from '../lib/bounded-command';
import { cVirtiofsdLockFile, extraArgsRefusal, flavourOf, killRecordedVirtiofsDaemons, virtiofsdArgs, virtiofsdFlavour } from './virtiofsd';

describe('virtiofsd', () => {
  it("tells QEMU's C virtiofsd from the Rust one by --version", () => {
    expect(flavourOf('virtiofsd version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022 Fabrice Bellard\n', 'v')).toBe('c');
    expect(flavourOf('virtiofsd 1.13.0\n', 'v')).toBe('rust');
    expect(() => flavourOf('GNU bash, version 5.2\n', '/bin/bash')).toThrow("'/bin/bash --version' does not say which virtiofsd it is");
  });

  const debianVirtiofsd = '/usr/lib/qemu/virtiofsd';
  (fs.existsSync(debianVirtiofsd) ? it : it.skip)("finds Debian 12's /usr/lib/qemu/virtiofsd to be QEMU's", async () => {
    expect(await virtiofsdFlavour(debianVirtiofsd)).toBe('c');
  });

  it('refuses a virtiofsd that is not there, saying what to do', async () => {
    await expect(virtiofsdFlavour('/nonexistent/virtiofsd')).rejects.toThrow("virtiofsd binary '/nonexistent/virtiofsd' is not an executable file; install it");
  });

  it('confines either flavour: namespaces, no mknod, no xattrs; C calls "never" none', () => {
    const c = virtiofsdArgs('c', '/w/virtiofsd-0.sock', '/w/shared', 'never');
    expect(c).toEqual([
      '--socket-path=/w/virtiofsd-0.sock', '-o', 'source=/w/shared', '-o', 'cache=none', '-o', 'sandbox=namespace',
      '-o', 'modcaps=-mknod:-setfcap', '-o', 'no_xattr', '-o', 'announce_submounts',
      '-o', 'no_posix_lock', '-o', 'no_flock', '-o', 'no_allow_direct_io', '-o', 'no_writeback', '-o', 'log_level=err',
    ]);
    const rust = virtiofsdArgs('rust', '/w/virtiofsd-0.sock', '/w/shared', 'auto');
    expect(rust).toEqual(expect.arrayContaining(['--shared-dir=/w/shared', '--cache=auto', '--sandbox=namespace', '--seccomp=kill', '--modcaps=-mknod:-setfcap']));
  });

  it("passes Kata's default extra args, after its own flags, and refuses any that could loosen it", () => {
    const kataDefault = ['--thread-pool-size=1', '--announce-submounts'];
    // --announce-submounts is passed already (C: -o announce_submounts): not twice.
    expect(virtiofsdArgs('c', '/w/s.sock', '/w/shared', 'never', kataDefault).slice(-3)).toEqual(['-o', 'log_level=err', '--thread-pool-size=1']);
    expect(virtiofsdArgs('rust', '/w/s.sock', '/w/shared', 'never', kataDefault).filter((a) => a === '--announce-submounts')).toHaveLength(1);
    expect(virtiofsdArgs('rust', '/w/s.sock', '/w/shared', 'never', kataDefault).at(-1)).toBe('--thread-pool-size=1');
    expect(extraArgsRefusal(kataDefault)).toBeUndefined();
    for (const loosening of ['--sandbox=none', '--seccomp=none', '--modcaps=+mknod', '--xattr', '-o', 'xattr', '--shared-dir=/', '--thread-pool-size=1 --xattr', '--thread-pool-size=99999', '--thread-pool-size']) {
      expect(extraArgsRefusal([loosening])).toContain(`${JSON.stringify(loosening)} is not passed to virtiofsd`);
      expect(() => virtiofsdArgs('rust', '/w/s.sock', '/w/shared', 'never', ['--thread-pool-size=2', loosening])).toThrow(/^virtio_fs_extra_args: .* kata-ts allows only --thread-pool-size=N/);
    }
  });

  (fs.existsSync('/usr/lib/qemu/virtiofsd') ? it : it.skip)("Debian 12's virtiofsd knows --thread-pool-size", async () => {
    const { stdout } = await runBounded('/usr/lib/qemu/virtiofsd', ['--help'], 10_000);
    expect(stdout).toMatch(/--thread-pool-size=NUM/);
  });

  it('after a crash, kills the virtiofsd and serving child a work dir records, leaves a reused pid alone, and removes the lock file', async () => {
    const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'virtiofsd-'));
    const parent = spawn('sleep', ['60'], { stdio: 'ignore' });
    const child = spawn('sleep', ['60'], { stdio: 'ignore' });
    const exited = Promise.all([parent, child].map((p) => new Promise((resolve) => p.once('exit', resolve))));
    const lock = cVirtiofsdLockFile(path.join(workDir, 'virtiofsd-0.sock'));
    try {
      await Promise.all([parent, child].map((p) => new Promise((resolve) => p.once('spawn', resolve))));
      fs.writeFileSync(path.join(workDir, 'virtiofsd-0.pid'), `${parent.pid} ${processStartTime(parent.pid!)}\n`);
      fs.writeFileSync(path.join(workDir, 'virtiofsd-0-child.pid'), `${child.pid} ${processStartTime(child.pid!)}\n`);
      // This process's pid with another start time: what a reused pid looks like.
      fs.writeFileSync(path.join(workDir, 'virtiofsd-1.pid'), `${process.pid} 1\n`);
      fs.mkdirSync(path.dirname(lock), { recursive: true });
      fs.writeFileSync(lock, '1\n');
      expect((await killRecordedVirtiofsDaemons(workDir)).sort()).toEqual([parent.pid, child.pid].sort());
      await exited;
      expect(fs.existsSync(lock)).toBe(false);
      expect(await killRecordedVirtiofsDaemons(path.join(workDir, 'gone'))).toEqual([]);
    } finally {
      parent.kill('SIGKILL');
      child.kill('SIGKILL');
      fs.rmSync(lock, { force: true });
      fs.rmSync(workDir, { recursive: true, force: true });
    }
  });

  it("names the C daemon's lock file as it does: the socket path with '/' as '.'", () => {
    expect(cVirtiofsdLockFile('/run/kata-ts/k8s.io/sb1/virtiofsd-0.sock')).toBe('/run/virtiofsd/.run.kata-ts.k8s.io.sb1.virtiofsd-0.sock.pid');
  });
});
