// Loads our .proto files once and hands out services and message types by name.
import * as path from 'path';
import * as protobuf from 'protobufjs';
import { TO_OBJECT_OPTIONS } from '../ttrpc';
import type { Decoded } from './proto-types';

/** protos/ relative to this file, both from the sources (ts-jest) and from dist/. */
export function protosDir(): string {
  const candidates = [path.resolve(__dirname, '..', 'protos'), path.resolve(__dirname, '..', '..', 'protos')];
  const fs = require('fs') as typeof import('fs');
  const found = candidates.find((dir) => fs.existsSync(path.join(dir, 'agent', 'agent.proto')));
  if (!found) throw new Error(`protos directory not found next to ${__dirname}`);
  return found;
}

/** Every .proto file the project loads, relative to protos/ (also the input of protos/generated/). */
export const PROTO_FILES = [
  'containerd/types/mount.proto',
  'containerd/types/task.proto',
  'containerd/task/v2/shim.proto',
  'containerd/events/task.proto',
  'containerd/events/forward.proto',
  'containerd/cgroups/v1/metrics.proto',
  'containerd/cgroups/v2/metrics.proto',
  'containerd/runtimeoptions/v1/api.proto',
  'agent/agent.proto',
];

let cached: protobuf.Root | undefined;

export function protoRoot(): protobuf.Root {
  if (cached) return cached;
  const dir = protosDir();
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    // google/protobuf/* come with protobufjs (common types); ours live under protos/.
    if (target.startsWith('google/protobuf/')) return target;
    return path.isAbsolute(target) ? target : path.join(dir, target);
  };
  root.loadSync(PROTO_FILES, { keepCase: true });
  root.resolveAll();
  cached = root;
  return root;
}

export const TASK_SERVICE = 'containerd.task.v2.Task';
export const EVENTS_SERVICE = 'containerd.services.events.ttrpc.v1.Events';
export const AGENT_SERVICE = 'katats.agent.v1.AgentService';

export function lookupService(name: string): protobuf.Service {
  return protoRoot().lookupService(name);
}

export function lookupType(name: string): protobuf.Type {
  return protoRoot().lookupType(name);
}

/**
 * Decodes `bytes` as the message `typeName` into the shape ttrpc hands handlers
 * (`Decoded<T>`, T being that message's generated interface). Throws on malformed input.
 */
export function decodeAs<T>(typeName: string, bytes: Uint8Array): Decoded<T> {
  const type = lookupType(typeName);
  return type.toObject(type.decode(bytes), TO_OBJECT_OPTIONS) as Decoded<T>;
}

/** `value` (the message's generated interface, T) encoded as the message `typeName`. */
export function encodeAs<T extends object>(typeName: string, value: T): Uint8Array {
  const type = lookupType(typeName);
  return type.encode(type.fromObject(value)).finish();
}

/** `value` encoded as `typeName` and decoded again: a request exactly as a handler gets it off the wire. */
export function asReceived<T extends object>(typeName: string, value: T): Decoded<T> {
  return decodeAs<T>(typeName, encodeAs(typeName, value));
}

/** Packs a message into google.protobuf.Any with containerd's type URL convention. */
export function packAny(typeName: string, value: object): { type_url: string; value: Buffer } {
  return { type_url: typeName, value: Buffer.from(encodeAs(typeName, value)) };
}

/** A google.protobuf.Timestamp for a JS date (ms precision is what we have). */
export function timestamp(date: Date): { seconds: number; nanos: number } {
  const ms = date.getTime();
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
}
