// A logger for tests that keeps what it logged, one parsed JSON object per line.
import { PassThrough } from 'stream';
import { createLogger, Logger } from '../logger';

export function capturedLogger(level = 'debug'): { logger: Logger; lines: Array<Record<string, unknown>>; messages: () => unknown[] } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new PassThrough();
  stream.on('data', (chunk: Buffer) => chunk.toString().split('\n').filter(Boolean).forEach((l) => lines.push(JSON.parse(l) as Record<string, unknown>)));
  return { logger: createLogger(stream, level), lines, messages: () => lines.map((l) => l.msg) };
}
