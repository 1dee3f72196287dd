import * as protobuf from 'protobufjs/light';

import { Code } from './codes';
import { TtrpcError } from './errors';

/*
 * The protocol's own envelope messages, built with protobufjs reflection.
 * Field numbers follow ttrpc's request.proto and google/rpc/status.proto.
 */
const root = new protobuf.Root();
root
  .define('google.protobuf')
  .add(new protobuf.Type('Any').add(new protobuf.Field('typeUrl', 1, 'string')).add(new protobuf.Field('value', 2, 'bytes')));
root
  .define('google.rpc')
  .add(
    new protobuf.Type('Status')
      .add(new protobuf.Field('code', 1, 'int32'))
      .add(new protobuf.Field('message', 2, 'string'))
      .add(new protobuf.Field('details', 3, 'google.protobuf.Any', 'repeated')),
  );
root
  .define('ttrpc')
  .add(new protobuf.Type('KeyValue').add(new protobuf.Field('key', 1, 'string')).add(new protobuf.Field('value', 2, 'string')))
  .add(
    new protobuf.Type('Request')
      .add(new protobuf.Field('service', 1, 'string'))
      .add(new protobuf.Field('method', 2, 'string'))
      .add(new protobuf.Field('payload', 3, 'bytes'))
      .add(new protobuf.Field('timeoutNano', 4, 'int64'))
      .add(new protobuf.Field('metadata', 5, 'ttrpc.KeyValue', 'repeated')),
  )
  .add(
    new protobuf.Type('Response')
      .add(new protobuf.Field('status', 1, 'google.rpc.Status'))
      .add(new protobuf.Field('payload', 2, 'bytes')),
  );
root.resolveAll();

const RequestType = root.lookupType('ttrpc.Request');
const ResponseType = root.lookupType('ttrpc.Response');

export interface KeyValue {
  key: string;
  value: string;
}

export interface RequestMessage {
  service: string;
  method: string;
  payload: Uint8Array;
  /** Nanoseconds; 0 means no deadline. */
  timeoutNano: number;
  metadata: KeyValue[];
}

export interface DecodedRequest extends RequestMessage {
  /** Whether the payload field was present on the wire (matters for client-streaming calls). */
  hasPayload: boolean;
}

export interface StatusMessage {
  code: number;
  message: string;
  details: { typeUrl: string; value: Uint8Array }[];
}

export interface ResponseMessage {
  status?: StatusMessage | null;
  payload: Uint8Array;
}

/** Metadata: each key may carry several values (sent as repeated KeyValue pairs). */
export type Metadata = Record<string, string[]>;

/** Options for turning decoded user messages into plain objects. */
export const TO_OBJECT_OPTIONS: protobuf.IConversionOptions = {
  longs: Number,
  enums: Number,
  defaults: true,
};

const ENVELOPE_OPTIONS: protobuf.IConversionOptions = { longs: Number, defaults: true };

export function encodeRequest(req: Partial<RequestMessage>): Uint8Array {
  return RequestType.encode(RequestType.fromObject(req)).finish();
}

/** Throws whatever protobufjs throws on malformed input. */
export function decodeRequest(data: Uint8Array): DecodedRequest {
  const msg = RequestType.decode(data);
  const obj = RequestType.toObject(msg, ENVELOPE_OPTIONS) as RequestMessage;
  return { ...obj, hasPayload: Object.prototype.hasOwnProperty.call(msg, 'payload') };
}

export function encodeResponse(code: Code, message: string, payload?: Uint8Array): Uint8Array {
  const obj: Record<string, unknown> = { status: { code, message } };
  if (payload && payload.length > 0) obj.payload = payload;
  return ResponseType.encode(ResponseType.fromObject(obj)).finish();
}

export function decodeResponse(data: Uint8Array): ResponseMessage {
  return ResponseType.toObject(ResponseType.decode(data), ENVELOPE_OPTIONS) as ResponseMessage;
}

export function metadataToPairs(md: Metadata | undefined): KeyValue[] {
  const out: KeyValue[] = [];
  if (!md) return out;
  for (const [key, values] of Object.entries(md)) {
    for (const value of values) out.push({ key, value });
  }
  return out;
}

export function pairsToMetadata(pairs: KeyValue[]): Metadata {
  const md: Metadata = {};
  for (const { key, value } of pairs) {
    (md[key] ??= []).push(value);
  }
  return md;
}

/** Name on the wire for a protobufjs service: its full name without the leading dot. */
export function serviceName(service: protobuf.Service): string {
  return service.fullName.replace(/^\./, '');
}

export interface MethodInfo {
  requestType: protobuf.Type;
  responseType: protobuf.Type;
  requestStream: boolean;
  responseStream: boolean;
}

export function methodInfo(service: protobuf.Service, name: string): MethodInfo | undefined {
  const method = Object.prototype.hasOwnProperty.call(service.methods, name) ? service.methods[name] : undefined;
  if (!method) return undefined;
  method.resolve();
  if (!method.resolvedRequestType || !method.resolvedResponseType) {
    throw new Error(`ttrpc: cannot resolve types of ${serviceName(service)}.${name}`);
  }
  return {
    requestType: method.resolvedRequestType,
    responseType: method.resolvedResponseType,
    requestStream: method.requestStream === true,
    responseStream: method.responseStream === true,
  };
}

/**
 * Encode a user message. A Uint8Array is taken as already-encoded bytes; with
 * no type (service given by name) only bytes are accepted.
 */
export function encodeMessage(type: protobuf.Type | undefined, value: unknown, what: string): Uint8Array {
  if (value instanceof Uint8Array) return value;
  if (!type) {
    throw new TtrpcError(Code.INVALID_ARGUMENT, `ttrpc: ${what} must be bytes when the service is given by name`);
  }
  try {
    return type.encode(type.fromObject((value ?? {}) as Record<string, unknown>)).finish();
  } catch (err) {
    throw new TtrpcError(Code.INVALID_ARGUMENT, `ttrpc: cannot encode ${what} as ${type.fullName.slice(1)}: ${errorMessage(err)}`, {
      cause: err,
    });
  }
}

/** Decode a user message to a plain object; without a type the bytes are returned as a Buffer. */
export function decodeMessage(type: protobuf.Type | undefined, data: Uint8Array): unknown {
  if (!type) return Buffer.from(data.buffer, data.byteOffset, data.length);
  return type.toObject(type.decode(data), TO_OBJECT_OPTIONS);
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
