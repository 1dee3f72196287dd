import { agentCallPhases, firstLogged, parsePerfScript, sampleKind, splitByPhase, unnamedByNeighbour } from './perf-split';

// As `perf script -F comm,pid,tid,time,ip,sym,dso` prints them.
const PERF = [
  '       CPU 0/TCG  7746/7749  1796323533.100000:      55ecb2cd23ef tcg_gen_code (/usr/bin/qemu-system-x86_64)',
  '       CPU 0/TCG  7746/7749  1796323533.101000:      7faebc00b31d [unknown] (/tmp/perf-7746.map)',
  '       CPU 0/TCG  7746/7749  1796323533.102000:      7faebc00b31d [unknown] (/tmp/perf-7746.map)',
  '       CPU 0/TCG  7746/7749  1796323533.103000:      55ecb2cd23ef [unknown] (/usr/bin/qemu-system-x86_64)',
  '       CPU 0/TCG  7746/7749  1796323533.104000:  ffffffff813ae453 finish_task_switch.isra.0 ([kernel.kallsyms])',
  '            node  7713/7713  1796323533.104500:      7f0000001000 (anonymous namespace)::Foo(int) const (/usr/bin/node)',
  '       CPU 0/TCG  9999/9001  1796323533.101500:      55ecb2cd23ef tcg_optimize (/usr/bin/qemu-system-x86_64)',
  '       CPU 0/TCG  7746/7749  1796323533.105000:      7f0000002000 [unknown] (/memfd:ram0 (deleted))',
  '       CPU 0/TCG  7746/7749  1796323533.300000:      55ecb2cd23ef translator_ldub (/usr/bin/qemu-system-x86_64)',
  '       CPU 0/TCG  7746/7749  1796323533.301000:  ffffffffc0a01234 kvm_foo ([kvm])',
  '       CPU 0/TCG  7746/7749  1796323533.301500:      7ffd1234a000 __vdso_clock_gettime ([vdso])',
  '       CPU 0/TCG  7746/7749  1796323533.302000:      55ecb2cd23ef tcg_cpus_exec (/usr/bin/qemu-system-x86_64)',
  'not a sample',
].join('\n');

describe('perf samples split by phase', () => {
  it('parses perf script lines: names with spaces, symbols with parentheses, a dso with its own', () => {
    const { samples, unparsed } = parsePerfScript(PERF);
    expect(unparsed).toBe(1);
    expect(samples).toHaveLength(12);
    expect(samples[0]).toEqual({ comm: 'CPU 0/TCG', pid: 7746, tid: 7749, time: 1796323533.1, ip: 0x55ecb2cd23ef, sym: 'tcg_gen_code', dso: '/usr/bin/qemu-system-x86_64' });
    expect(samples[5]).toMatchObject({ comm: 'node', sym: '(anonymous namespace)::Foo(int) const', dso: '/usr/bin/node' });
    expect(samples[7].dso).toBe('/memfd:ram0 (deleted)');
  });

  it('tells running guest code from translating it, QEMU otherwise, and the host kernel with its modules by address', () => {
    // [vdso] is user space, tcg_cpus_exec runs guest code rather than translating it.
    expect(parsePerfScript(PERF).samples.map(sampleKind)).toEqual(['translating', 'guestCode', 'guestCode', 'qemuOther', 'hostKernel', 'other', 'translating', 'other', 'translating', 'hostKernel', 'other', 'qemuOther']);
  });

  it("counts only that QEMU's vCPU samples inside each phase; busy is their CPU time over the phase's", () => {
    const [first, second] = splitByPhase(
      parsePerfScript(PERF).samples,
      7746,
      [
        { name: 'SetGuestDateTime', start: 1796323533.1, end: 1796323533.1025 },
        { name: 'CreateSandbox', start: 1796323533.2, end: 1796323533.4 },
      ],
      0.0005,
    );
    expect(first.name).toBe('SetGuestDateTime');
    expect(first.ms).toBeCloseTo(2.5, 3);
    expect(first.samples).toBe(3);
    expect(first.busy).toBeCloseTo((3 * 0.5) / 2.5, 3); // 3 samples of 0.5 ms CPU in 2.5 ms; the other QEMU's not counted
    expect(first.share).toEqual({ guestCode: 2 / 3, translating: 1 / 3, qemuOther: 0, hostKernel: 0, other: 0 });
    expect(second.share).toEqual({ guestCode: 0, translating: 0.25, qemuOther: 0.25, hostKernel: 0.25, other: 0.25 });
  });

  it("reads one pod's agent calls, numbering repeats, and its first log lines, from the shim's debug log", () => {
    const log = [
      'time="2026-12-03T18:24:56.900Z" level=debug msg="containerd line"',
      '{"level":30,"time":"2026-12-03T18:24:56.740Z","shim":"lat-1","msg":"VM restored from its template and running","pid":4242}',
      '{"level":20,"time":"2026-12-03T18:24:56.977Z","shim":"lat-1","msg":"agent call","method":"SetGuestDateTime","ms":236.4,"failed":false}',
      '{"level":20,"time":"2026-12-03T18:24:56.977Z","shim":"lat-2","msg":"agent call","method":"CreateSandbox","ms":10,"failed":false}',
      '{"level":20,"time":"2026-12-03T18:24:57.100Z","shim":"lat-1","msg":"agent call","method":"SetGuestDateTime","ms":20,"failed":false}',
      '{"level":30,"time":"2026-12-03T18:24:57.200Z","shim":"lat-1","msg":"VM restored from its template and running","pid":1}',
    ].join('\n');
    const phases = agentCallPhases(log, 'lat-1');
    expect(phases.map((p) => p.name)).toEqual(['SetGuestDateTime', 'SetGuestDateTime #2']);
    expect(phases[0].end - phases[0].start).toBeCloseTo(0.2364, 6);
    expect(phases[0].end).toBeCloseTo(Date.parse('2026-12-03T18:24:56.977Z') / 1000, 6);
    const restored = firstLogged(log, 'lat-1').get('VM restored from its template and running');
    expect(restored?.time).toBeCloseTo(Date.parse('2026-12-03T18:24:56.740Z') / 1000, 6);
    expect(restored?.fields.pid).toBe(4242);
  });

  it("counts a stripped binary's unnamed samples under the nearest exported symbol below them", () => {
    const text = [
      ' qemu-system-x86  7746/7746  1796323533.263146: PERF_RECORD_MMAP2 7746/7746: [0x55ecb28f9000(0x597000) @ 0x407000 fe:00 2170908 3118837963]: r-xp /usr/bin/qemu-system-x86_64',
      '       CPU 0/TCG  7746/7749  1796323533.300000:      55ecb28fa010 [unknown] (/usr/bin/qemu-system-x86_64)', // offset 0x408010
      '       CPU 0/TCG  7746/7749  1796323533.300500:      55ecb28fb000 [unknown] (/usr/bin/qemu-system-x86_64)', // offset 0x409000
      '       CPU 0/TCG  7746/7749  1796323533.301000:      55ecb28fa020 [unknown] (/usr/bin/qemu-system-x86_64)', // offset 0x408020
      '       CPU 0/TCG  7746/7749  1796323533.301500:      55ecb28fa020 tcg_gen_code (/usr/bin/qemu-system-x86_64)', // named: not counted
      '       CPU 0/TCG  7746/7749  1796323533.302000:      10 [unknown] (/usr/bin/qemu-system-x86_64)', // outside the mapping
      '       CPU 0/TCG  8000/8003  1796323533.302500:      55ecb28fa010 [unknown] (/usr/bin/qemu-system-x86_64)', // another QEMU, whose mapping is not known
      ' other-process  9000/9000  1796323533.263146: PERF_RECORD_MMAP2 9000/9000: [0x400000(0x1000) @ 0 fe:00 12 34]: r-xp /usr/bin/other',
    ].join('\n');
    const { samples, mappings, unparsed } = parsePerfScript(text);
    expect(unparsed).toBe(0);
    expect(mappings).toEqual([
      { pid: 7746, start: 0x55ecb28f9000, length: 0x597000, fileOffset: 0x407000, path: '/usr/bin/qemu-system-x86_64' },
      { pid: 9000, start: 0x400000, length: 0x1000, fileOffset: 0, path: '/usr/bin/other' },
    ]);
    const symbols = [
      { offset: 0x408000, name: 'tcg_op_remove' },
      { offset: 0x408f00, name: 'curr_cflags' },
      { offset: 0x407000, name: 'first' },
    ];
    expect([...unnamedByNeighbour(samples, mappings, '/usr/bin/qemu-system-x86_64', symbols)]).toEqual([
      ['tcg_op_remove … curr_cflags', 2],
      ['curr_cflags … (end)', 1],
      ['(no mapping)', 2],
    ]);
  });
});
