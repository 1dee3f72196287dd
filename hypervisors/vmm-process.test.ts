import { rateLimited } from './vmm-process';

describe('rateLimited (a VMM or virtiofsd whose stderr the guest can fill)', () => {
  it('opens `limit` times per window, then counts, and reports the count when the window ends', () => {
    let now = 0;
    const reported: number[] = [];
    const gate = rateLimited(2, 60_000, (n) => reported.push(n), () => now);
    expect([gate(), gate(), gate(), gate(), gate()]).toEqual([true, true, false, false, false]);
    expect(reported).toEqual([]);
    now = 60_000;
    expect(gate()).toBe(true);
    expect(reported).toEqual([3]);
    now = 120_000;
    expect(gate()).toBe(true);
    expect(reported).toEqual([3]); // nothing was refused in the second window
  });
});
