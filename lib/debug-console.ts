// The debug console's wire contract, shared by the agent (guest) and
// `kata-ts-runtime exec` (host). The port carries the shell's terminal as raw bytes
// both ways, so `socat - UNIX-CONNECT:<socket>` works as a client too. The one
// addition is a notice when the shell exits: a virtio-serial port cannot hang up on
// the host (the VMM keeps the host's connection open whatever the guest does), so
// the client learns it in-band.

/** The guest's virtio-serial port name (Kata's agent uses vsock port 1026 instead). */
export const DEBUG_CONSOLE_PORT_NAME = 'console.debug.0';

/**
 * An OSC escape sequence: terminals swallow OSC codes they do not know, so a raw
 * client shows only the human line that follows it. The status is 0-255.
 */
const EXIT_PREFIX = '\x1b]kata-ts;shell-exit=';
const EXIT_END = '\x07';
const EXIT_NOTICE = /\x1b\]kata-ts;shell-exit=(\d{1,3})\x07/;
const MAX_STATUS_DIGITS = 3;
const EMPTY = Buffer.alloc(0);

export function shellExitNotice(status: number): Buffer {
  return Buffer.from(`${EXIT_PREFIX}${status}${EXIT_END}\r\n[kata-ts debug console: the shell exited with status ${status}; starting a new one]\r\n`, 'latin1');
}

/**
 * Finds the exit notice in the console's output. Bytes that might be the start of a
 * notice are held back until the next chunk shows whether they are; everything else
 * is passed through as it came.
 */
export class ShellExitScanner {
  private held = EMPTY;
  private status: number | undefined;

  /** What to show of `chunk`, and the shell's exit status once the notice came (nothing after it is output). */
  push(chunk: Buffer): { output: Buffer; exitStatus?: number } {
    if (this.status !== undefined) return { output: EMPTY, exitStatus: this.status };
    const data = this.held.length > 0 ? Buffer.concat([this.held, chunk]) : chunk;
    // latin1 maps each byte to one character, so string offsets are byte offsets.
    const text = data.toString('latin1');
    const notice = EXIT_NOTICE.exec(text);
    if (notice) {
      this.held = EMPTY;
      this.status = Number(notice[1]);
      return { output: data.subarray(0, notice.index), exitStatus: this.status };
    }
    const keep = incompleteNoticeStart(text);
    this.held = Buffer.from(data.subarray(keep));
    return { output: data.subarray(0, keep) };
  }

  /** Bytes still held back (at the end of the stream they were output after all). */
  flush(): Buffer {
    const held = this.held;
    this.held = EMPTY;
    return held;
  }
}

/** Where a notice that the next bytes could complete starts in `text`; text.length if nowhere. */
function incompleteNoticeStart(text: string): number {
  const window = EXIT_PREFIX.length + MAX_STATUS_DIGITS;
  for (let i = Math.max(0, text.length - window); i < text.length; i++) {
    if (text[i] !== '\x1b') continue;
    const tail = text.slice(i);
    if (EXIT_PREFIX.startsWith(tail)) return i;
    if (tail.startsWith(EXIT_PREFIX) && new RegExp(`^\\d{0,${MAX_STATUS_DIGITS}}$`).test(tail.slice(EXIT_PREFIX.length))) return i;
  }
  return text.length;
}
