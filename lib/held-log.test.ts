import { createLogger, HeldLog } from './logger';

describe('HeldLog', () => {
  it('keeps what is logged before it has a target, then sends that and the rest there', () => {
    const held = new HeldLog();
    const logger = createLogger(held, 'info');
    logger.info('before the claim');
    const lines: string[] = [];
    held.sendTo({ write: (line: string) => void lines.push(line) });
    logger.info('after the claim');
    expect(lines.map((l) => JSON.parse(l).msg)).toEqual(['before the claim', 'after the claim']);
  });

  it('keeps only the newest 64 KiB while nobody reads it', () => {
    const held = new HeldLog();
    for (let i = 0; i < 1000; i++) held.write(`${String(i).padStart(4, '0')}${'x'.repeat(1000)}\n`);
    const lines: string[] = [];
    held.sendTo({ write: (line: string) => void lines.push(line) });
    expect(lines.join('').length).toBeLessThanOrEqual(64 * 1024);
    expect(lines[lines.length - 1].startsWith('0999')).toBe(true);
    expect(lines.length).toBeGreaterThan(50);
  });
});
