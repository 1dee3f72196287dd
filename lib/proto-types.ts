// The TypeScript shapes of our protocol messages, from the types generated out of
// protos/ (protos/generated/messages.d.ts, `make protos`). Types only: at run time
// messages are encoded and decoded by reflection over a descriptor of the same .proto
// files (protos/generated/descriptor.json, lib/protos.ts), so nothing here can drift
// from the wire without a type error or a staleness test failing.
//
// Fields we do not know (a newer containerd's, say) are dropped when decoding (proto3
// would keep them for re-encoding, but nothing here forwards a message it received):
// a request keeps working and the new field is ignored until it is added to protos/
// and handled here.
import type Long from 'long';
import type { containerd, google, io, katats, runtimeoptions } from '../protos/generated/messages';

export type { containerd, google, io, katats, runtimeoptions };

/**
 * A message as ttrpc hands it over after decoding (ttrpc/messages.ts TO_OBJECT_OPTIONS:
 * defaults on, 64-bit integers and enums as numbers, bytes as Buffer): every scalar,
 * repeated and map field is present; a message field is null when the peer left it out.
 * An enum is a plain number: a newer peer may send a value we have no name for. A
 * 64-bit integer above 2^53 loses precision as a number: values a peer controls are
 * range-checked where they are used.
 */
export type Decoded<T> = { [K in keyof T]-?: DecodedValue<Exclude<T[K], null | undefined>> };

type DecodedValue<V> = V extends Long | number
  ? number
  : V extends Uint8Array
    ? Buffer
    : V extends string | boolean
      ? V
      : V extends readonly (infer E)[]
        ? DecodedElement<Exclude<E, null | undefined>>[]
        : V extends object
          ? string extends keyof V
            ? { [key: string]: DecodedElement<V[string]> } // a map field: {} when empty
            : Decoded<V> | null
          : V;

/** An element of a repeated or map field: never null. */
type DecodedElement<V> = V extends Long | number | Uint8Array | string | boolean ? DecodedValue<V> : V extends object ? Decoded<V> : V;

/** A method of a pbts service class: its request (the message's I-interface) and response (its class). */
type Rpc<Method> = Method extends (request: infer Request) => Promise<infer Response> ? { request: Request; response: Response } : never;

/**
 * The unary methods of a generated service class by their names on the wire (pbts
 * lower-cases the first letter: `closeIO` is `CloseIO`), each with its request and
 * response types.
 */
export type ServiceMethods<Service> = {
  [K in keyof Service as K extends string ? (Rpc<Service[K]> extends never ? never : Capitalize<K>) : never]: Rpc<Service[K]>;
};

/** What a handler may answer: any subset of the response's fields (the rest encode as defaults). */
export type Reply<Response> = { [K in keyof Response as Response[K] extends (...args: never[]) => unknown ? never : K]?: Response[K] | null };

type RequestOf<Service, M extends keyof ServiceMethods<Service>> = ServiceMethods<Service>[M] extends { request: infer Request } ? Request : never;
type ResponseOf<Service, M extends keyof ServiceMethods<Service>> = ServiceMethods<Service>[M] extends { response: infer Response } ? Response : never;

/** A server's implementation of `Service`: one handler per method, typed both ways. */
export type ServiceHandlers<Service> = {
  [M in keyof ServiceMethods<Service>]: (request: Decoded<RequestOf<Service, M>>) => Promise<Reply<ResponseOf<Service, M>>>;
};

/** A client's view of `Service`: what a call of method M sends, and what it gets back decoded. */
export type CallRequest<Service, M extends keyof ServiceMethods<Service>> = RequestOf<Service, M>;
export type CallResponse<Service, M extends keyof ServiceMethods<Service>> = Decoded<ResponseOf<Service, M>>;

export type TaskService = containerd.task.v2.Task;
export type TaskHandlers = ServiceHandlers<TaskService>;
export type AgentServiceMethods = ServiceMethods<katats.agent.v1.AgentService>;
export type AgentHandlers = ServiceHandlers<katats.agent.v1.AgentService>;
