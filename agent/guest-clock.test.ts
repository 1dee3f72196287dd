import { setGuestDateTime } from './guest-clock';

describe('setGuestDateTime', () => {
  it('sets whole seconds, rounding the microseconds', async () => {
    const set: number[] = [];
    await setGuestDateTime(1_800_000_000, 499_999, async (s) => void set.push(s));
    await setGuestDateTime(1_800_000_000, 500_000, async (s) => void set.push(s));
    expect(set).toEqual([1_800_000_000, 1_800_000_001]);
  });

  it('refuses what is not a plausible time, before touching the clock', async () => {
    const set = jest.fn(async () => undefined);
    await expect(setGuestDateTime(0, 0, set)).rejects.toThrow(/outside 2000/);
    await expect(setGuestDateTime(1_800_000_000, 1_000_000, set)).rejects.toThrow(/not a time/);
    await expect(setGuestDateTime(Number.NaN, 0, set)).rejects.toThrow(/not a time/);
    await expect(setGuestDateTime(9e15, 0, set)).rejects.toThrow(/outside 2000/);
    expect(set).not.toHaveBeenCalled();
  });
});
