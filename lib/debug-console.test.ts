import { shellExitNotice, ShellExitScanner } from './debug-console';

/** Feeds `chunks` through one scanner; what it showed and the status it found. */
function scan(chunks: Array<string | Buffer>): { shown: string; exitStatus?: number } {
  const scanner = new ShellExitScanner();
  const shown: Buffer[] = [];
  let exitStatus: number | undefined;
  for (const chunk of chunks) {
    const result = scanner.push(typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk);
    shown.push(result.output);
    exitStatus ??= result.exitStatus;
  }
  if (exitStatus === undefined) shown.push(scanner.flush());
  return { shown: Buffer.concat(shown).toString('latin1'), exitStatus };
}

describe('debug console exit notice', () => {
  it('passes terminal output through unchanged, escape sequences included', () => {
    const output = ['~ # ', 'ls\r\n\x1b[1;34mbin\x1b[0m\r\n', '\x1b]0;window title\x07', 'bytes \xff\x00\x1b'];
    expect(scan(output)).toEqual({ shown: output.join(''), exitStatus: undefined });
  });

  it('stops at the notice with the shell status; nothing after it is shown', () => {
    const notice = shellExitNotice(7);
    expect(scan([Buffer.concat([Buffer.from('bye\r\n'), notice, Buffer.from('~ # ')])])).toEqual({ shown: 'bye\r\n', exitStatus: 7 });
  });

  it('finds a notice split anywhere, holding back no more than could belong to it', () => {
    const text = 'exit 130\r\n';
    const stream = Buffer.concat([Buffer.from(text), shellExitNotice(130)]);
    for (let cut = 1; cut < stream.length; cut++) {
      expect(scan([stream.subarray(0, cut), stream.subarray(cut)])).toEqual({ shown: text, exitStatus: 130 });
      // Output before the notice is shown at once, not held with it.
      expect(new ShellExitScanner().push(stream.subarray(0, cut)).output.toString()).toBe(text.slice(0, cut));
    }
    expect(scan([...stream].map((byte) => Buffer.from([byte])))).toEqual({ shown: 'exit 130\r\n', exitStatus: 130 });
  });

  it('releases a lookalike once it stops looking like a notice', () => {
    const scanner = new ShellExitScanner();
    expect(scanner.push(Buffer.from('a\x1b]kata-ts;shell-ex')).output.toString()).toBe('a');
    expect(scanner.push(Buffer.from('it=12x')).output.toString()).toBe('\x1b]kata-ts;shell-exit=12x');
    expect(scan(['\x1b]kata-ts;shell-exit=1234\x07'])).toEqual({ shown: '\x1b]kata-ts;shell-exit=1234\x07', exitStatus: undefined });
  });

  it('tells a raw client (socat) in words', () => {
    expect(shellExitNotice(0).toString()).toContain('[kata-ts debug console: the shell exited with status 0; starting a new one]');
  });
});
