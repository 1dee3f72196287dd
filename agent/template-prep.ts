// What a VM template's agent builds before its first answer, so that its clones need not.
//
// Why: a clone starts from the template's memory, so what the agent built there every
// clone has. What the agent builds lazily, on the first call that needs it, each clone
// builds again, and under TCG QEMU translates V8's parser and compiler anew for each
// clone to do it. A profile of a spare VM's agent through a CRI pod's start (V8's
// sampling profiler, in the guest) found three such things in the calls' path:
// - protobufjs generating a message type's codec on the type's first use (its
//   constructor, encode, decode, toObject...: each a `new Function` compiled from
//   source): 25-80 ms between a request's arrival and its handler, for each call the
//   clone had not had before;
// - Node loading its fs.watch code on the first OOM watch: about 100 ms inside the
//   pause container's StartContainer;
// - V8 compiling a regular expression on its first test: 35 ms for the first one in a
//   clone (CreateSandbox's hostname check; QEMU translating V8's regexp compiler for
//   that clone), 1.5 ms for a second.
// A cold-booted agent does none of this ahead: it would pay for every type up front,
// including those of calls its pod never makes (as --no-lazy, guest/init).
import * as fs from 'fs';
import type * as protobuf from 'protobufjs/light';
import { INTERFACE_NAME, MAC_ADDRESS } from '../lib/net-names';
import { messageTypesOf, prepareCodecs } from '../lib/protos';
import { CPU_DIR, MEMORY_BLOCK_DIR } from './online-cpu-mem';
import { OOM_KILL_LINE } from './oom-watcher';
import { NET_SYSCTL_KEY, PROC_SYS_VALUE_REFUSED } from './pod-sysctls';

/**
 * The regular expressions a pod's start may test: CreateSandbox's hostname and
 * CreateContainer's network sysctls, UpdateInterface's name and MAC, StartContainer's OOM
 * watch, OnlineCpuMem's sysfs entries (after a hot-plug). Others (a failing command's
 * messages, metrics) compile on first use. None is global or sticky (a test would move
 * its lastIndex).
 */
export const POD_START_PATTERNS: readonly RegExp[] = [PROC_SYS_VALUE_REFUSED, NET_SYSCTL_KEY, INTERFACE_NAME, MAC_ADDRESS, OOM_KILL_LINE, CPU_DIR, MEMORY_BLOCK_DIR];

export interface Prepared {
  /** Message types whose codecs were generated. */
  messageTypes: number;
  /** Regular expressions compiled (POD_START_PATTERNS). */
  patterns: number;
  /** Whether fs.watch's code is loaded (false: watching `dir` failed; a clone then loads it itself). */
  watchLoaded: boolean;
  ms: number;
}

/**
 * Generates the codecs of every message type `service`'s calls reach through their fields
 * (not what an Any packs: StatsContainer's metrics, off a pod's start), compiles POD_START_PATTERNS
 * (a test compiles the pattern for one-byte strings, which every name and file here is;
 * the agent runs --jitless, so that compile is the pattern's last), and loads fs.watch's
 * code by watching `dir` for a moment.
 */
export function prepareForClones(service: protobuf.Service, dir: string): Prepared {
  const started = performance.now();
  const types = messageTypesOf(service);
  prepareCodecs(types);
  for (const pattern of POD_START_PATTERNS) pattern.test('katats');
  let watchLoaded = true;
  try {
    fs.watch(dir).close();
  } catch {
    watchLoaded = false;
  }
  return { messageTypes: types.length, patterns: POD_START_PATTERNS.length, watchLoaded, ms: Math.round(performance.now() - started) };
}
