import { spawnSync } from 'child_process';
import { DAEMON_MMAP_THRESHOLD, keepAllocatorSettingToSelf, MMAP_THRESHOLD_VAR, withDaemonAllocator } from './daemon-allocator';
import { daemonEnv } from './spare-pool';
import { takeEnvironment } from './spare';

describe("the shim daemon's allocator setting", () => {
  it('fixes the mmap threshold unless the user set one, directly or through GLIBC_TUNABLES', () => {
    expect(withDaemonAllocator({ PATH: '/bin' })).toEqual({ PATH: '/bin', MALLOC_MMAP_THRESHOLD_: '131072' });
    expect(withDaemonAllocator({ MALLOC_MMAP_THRESHOLD_: '65536' })).toEqual({ MALLOC_MMAP_THRESHOLD_: '65536' });
    expect(withDaemonAllocator({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=4096' })).toEqual({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=4096' });
    // Another tunable only: ours is added beside it.
    expect(withDaemonAllocator({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' })).toEqual({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2', MALLOC_MMAP_THRESHOLD_: '131072' });
  });

  it('is not passed on to what the daemon runs (QEMU, virtiofsd, commands); a value the user set is', () => {
    const saved = process.env[MMAP_THRESHOLD_VAR];
    // jest gives each test file its own process.env: the child gets it as a daemon's would get the daemon's.
    const childSees = () => spawnSync('sh', ['-c', `echo \${${MMAP_THRESHOLD_VAR}-unset}`], { encoding: 'utf8', env: process.env }).stdout.trim();
    try {
      process.env[MMAP_THRESHOLD_VAR] = DAEMON_MMAP_THRESHOLD;
      expect(childSees()).toBe(DAEMON_MMAP_THRESHOLD);
      keepAllocatorSettingToSelf();
      expect(childSees()).toBe('unset');
      process.env[MMAP_THRESHOLD_VAR] = '65536';
      keepAllocatorSettingToSelf();
      expect(childSees()).toBe('65536');
    } finally {
      if (saved === undefined) delete process.env[MMAP_THRESHOLD_VAR];
      else process.env[MMAP_THRESHOLD_VAR] = saved;
    }
  });

  it("is dropped when a spare takes its claimer's environment, which has it", () => {
    const saved = { ...process.env };
    try {
      takeEnvironment(daemonEnv({ PATH: '/usr/bin', KEPT: 'yes' }));
      expect(process.env[MMAP_THRESHOLD_VAR]).toBeUndefined();
      expect(process.env.KEPT).toBe('yes');
      expect(process.env.UV_THREADPOOL_SIZE).toBe('16');
    } finally {
      for (const name of Object.keys(process.env)) delete process.env[name];
      Object.assign(process.env, saved);
    }
  });
});
