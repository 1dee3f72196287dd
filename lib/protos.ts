// Hands out the project's protocol services and message types by name, from the
// descriptor `make protos` derives from protos/*.proto (lib/proto-descriptor.ts): the
// light protobufjs build, without its .proto parser, so no start parses text.
import * as fs from 'fs';
import * as path from 'path';
import * as protobuf from 'protobufjs/light';
import { TO_OBJECT_OPTIONS } from '../ttrpc';
import type { Decoded } from './proto-types';

/** The descriptor's path under protos/. */
export const PROTO_DESCRIPTOR = path.join('generated', 'descriptor.json');

/**
 * protos/ relative to this file, both from the sources (ts-jest) and from dist/: the
 * directory with the descriptor (the guest has only that) or with the .proto files.
 */
export function protosDir(): string {
  const candidates = [path.resolve(__dirname, '..', 'protos'), path.resolve(__dirname, '..', '..', 'protos')];
  const found = candidates.find((dir) => [PROTO_DESCRIPTOR, 'agent/agent.proto'].some((file) => fs.existsSync(path.join(dir, file))));
  if (!found) throw new Error(`protos directory not found next to ${__dirname}`);
  return found;
}

let cached: protobuf.Root | undefined;

export function protoRoot(): protobuf.Root {
  cached ??= readProtoRoot();
  return cached;
}

/** A new root read from the descriptor: its types not yet used, unlike protoRoot()'s (for tests that need that). */
export function readProtoRoot(): protobuf.Root {
  const file = path.join(protosDir(), PROTO_DESCRIPTOR);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`${file} is missing: run \`make protos\``);
    throw err;
  }
  const root = protobuf.Root.fromJSON(JSON.parse(text) as protobuf.INamespace);
  root.resolveAll();
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

/**
 * Every message type a service's calls carry: each method's request and response, and
 * the message types of their fields, all the way down (map values included; not what a
 * google.protobuf.Any packs, which no field names).
 */
export function messageTypesOf(service: protobuf.Service): protobuf.Type[] {
  const found = new Set<protobuf.Type>();
  const visit = (type: protobuf.Type) => {
    if (found.has(type)) return;
    found.add(type);
    for (const field of type.fieldsArray) {
      const nested = field.resolve().resolvedType;
      if (nested instanceof protobuf.Type) visit(nested);
    }
  };
  for (const method of service.methodsArray) {
    method.resolve();
    if (method.resolvedRequestType) visit(method.resolvedRequestType);
    if (method.resolvedResponseType) visit(method.resolvedResponseType);
  }
  return [...found];
}

/**
 * Generates now what protobufjs generates on a type's first use: its constructor,
 * encode, decode, verify, fromObject and toObject, each a function compiled from source
 * (`new Function`). A VM template's agent does this for its clones (agent/template-prep.ts).
 */
export function prepareCodecs(types: protobuf.Type[]): void {
  for (const type of types) {
    void type.ctor;
    type.setup();
  }
}
