import { agentCallPhases, firstLogged, parsePerfScript, sampleKind, splitByPhase } from './perf-split';

const PERF = [
  '       CPU 0/TCG 31431 1796323533.100000:      561dbbe0e3ef tcg_gen_code+0x5d4 (/usr/bin/qemu-system-x86_64)',
  '       CPU 0/TCG 31431 1796323533.101000:      7faebc00b31d [unknown] (/tmp/perf-31428.map)',
  '       CPU 0/TCG 31431 1796323533.102000:      7faebc00b31d [unknown] (/tmp/perf-31428.map)',
  '       CPU 0/TCG 31431 1796323533.103000:      561dbbe0e3ef [unknown] (/usr/bin/qemu-system-x86_64)',
  '       CPU 0/TCG 31431 1796323533.104000:      ffffffff8a0c [k] do_sys_poll+0x12 ([kernel.kallsyms])',
  '            node  1842 1796323533.104500:      7f0000001000 Builtins_Foo+0x1 (/usr/bin/node)',
  '       CPU 0/TCG 31431 1796323533.300000:      561dbbe0e3ef translator_ldub+0x4 (/usr/bin/qemu-system-x86_64)',
  'garbage line',
].join('\n');

describe('perf samples split by phase', () => {
  it('parses perf script lines, names with spaces included', () => {
    const samples = parsePerfScript(PERF);
    expect(samples).toHaveLength(7);
    expect(samples[0]).toEqual({ comm: 'CPU 0/TCG', tid: 31431, time: 1796323533.1, sym: 'tcg_gen_code', dso: '/usr/bin/qemu-system-x86_64' });
    expect(samples[5].comm).toBe('node');
  });

  it('tells running guest code from translating it, QEMU otherwise, and the host kernel', () => {
    expect(parsePerfScript(PERF).map(sampleKind)).toEqual(['translating', 'guestCode', 'guestCode', 'qemuOther', 'hostKernel', 'other', 'translating']);
  });

  it("counts only the vCPU thread's samples inside each phase, with its busy share", () => {
    const [first, second] = splitByPhase(
      parsePerfScript(PERF),
      [
        { name: 'SetGuestDateTime', start: 1796323533.1, end: 1796323533.1025 },
        { name: 'CreateSandbox', start: 1796323533.2, end: 1796323533.4 },
      ],
      2000,
    );
    expect(first.name).toBe('SetGuestDateTime');
    expect(first.ms).toBeCloseTo(2.5, 3);
    expect(first.busy).toBeCloseTo(3 / 5, 3); // 3 samples where 2.5 ms at 2 kHz gives 5
    expect(first.share).toEqual({ guestCode: 2 / 3, translating: 1 / 3, qemuOther: 0, hostKernel: 0, other: 0 });
    expect(second.share.translating).toBe(1);
    expect(second.busy).toBeCloseTo(1 / 400, 5);
  });

  it("reads one pod's agent calls and first log times from the shim's debug log", () => {
    const log = [
      'time="2026-12-03T18:24:56.900Z" level=debug msg="containerd line"',
      '{"level":30,"time":"2026-12-03T18:24:56.740Z","shim":"lat-1","msg":"agent ready"}',
      '{"level":20,"time":"2026-12-03T18:24:56.977Z","shim":"lat-1","msg":"agent call","method":"SetGuestDateTime","ms":236,"failed":false}',
      '{"level":20,"time":"2026-12-03T18:24:56.977Z","shim":"lat-2","msg":"agent call","method":"CreateSandbox","ms":10,"failed":false}',
      '{"level":30,"time":"2026-12-03T18:24:57.000Z","shim":"lat-1","msg":"agent ready"}',
    ].join('\n');
    const phases = agentCallPhases(log, 'lat-1');
    expect(phases).toHaveLength(1);
    expect(phases[0].name).toBe('SetGuestDateTime');
    expect(phases[0].end - phases[0].start).toBeCloseTo(0.236, 6);
    expect(phases[0].end).toBeCloseTo(Date.parse('2026-12-03T18:24:56.977Z') / 1000, 6);
    expect(firstLogged(log, 'lat-1').get('agent ready')).toBeCloseTo(Date.parse('2026-12-03T18:24:56.740Z') / 1000, 6);
  });
});
