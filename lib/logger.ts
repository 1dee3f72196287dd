// pino loggers: the shim writes to containerd's `log` FIFO in the bundle, the agent to
// the guest console. Components get child loggers (`logger.child({sandbox})`).
import pino from 'pino';

export type Logger = pino.Logger;

export function createLogger(destination: NodeJS.WritableStream | number, level: string = process.env.KATATS_LOG_LEVEL ?? 'info'): Logger {
  const stream = typeof destination === 'number' ? pino.destination({ fd: destination, sync: true }) : destination;
  return pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, stream);
}

/** A logger that drops everything (tests, the short-lived start/delete actions). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
