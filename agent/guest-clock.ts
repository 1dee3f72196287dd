// The guest's wall clock, set by the shim (SetGuestDateTime). A VM cloned from a
// template wakes with the template's time: the guest has no RTC to correct it and
// nothing else in it would.
import { InvalidArgumentError } from '../lib/errors';
import { runCommand } from './guest-command';

/** Sets the clock to this many whole seconds since the epoch; replaced in tests. */
export type SetClock = (epochSeconds: number) => Promise<void>;

/** busybox `date -s @N`: Node has no settimeofday, and busybox takes whole seconds only. */
const busyboxDate: SetClock = async (epochSeconds) => {
  try {
    await runCommand('date', ['-u', '-s', `@${epochSeconds}`]);
  } catch (err) {
    const stderr = ((err as { stderr?: string }).stderr ?? '').trim();
    throw new InvalidArgumentError(`setting the guest clock failed: ${stderr || (err as Error).message}`);
  }
};

/** 2000-01-01 and 2200-01-01: a clock outside is a caller's mistake, not a time to set. */
const EARLIEST = 946_684_800;
const LATEST = 7_258_118_400;

/**
 * Sets the clock to `sec`.`usec`, rounded to the nearest second (half a second is the
 * error; a clone's clock needs to be right within a second or two, not exact).
 */
export async function setGuestDateTime(sec: number, usec: number, setClock: SetClock = busyboxDate): Promise<number> {
  if (!Number.isFinite(sec) || !Number.isFinite(usec) || usec < 0 || usec >= 1_000_000) throw new InvalidArgumentError(`SetGuestDateTime: ${sec}.${usec} is not a time`);
  const seconds = Math.round(sec + usec / 1_000_000);
  if (seconds < EARLIEST || seconds > LATEST) throw new InvalidArgumentError(`SetGuestDateTime: ${seconds} is outside 2000–2200; refusing to set the clock to it`);
  await setClock(seconds);
  return seconds;
}
