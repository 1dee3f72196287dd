// Reads and replaces the OCI spec of a container made by `ctr containers create`,
// through containerd's Containers API (Get; Update with the field mask "spec"), for
// what ctr cannot put in a spec by flag (hooks, for one; `ctr run --config` in 1.6
// takes no image). The task created from the container afterwards gets this spec as
// its bundle's config.json. Messages are declared with containerd's field numbers
// (api/services/containers/v1/containers.proto), the same in containerd 1.6 to 2.x.
import * as grpc from '@grpc/grpc-js';
import * as protobuf from 'protobufjs';

const CONTAINERS_PROTO = `
syntax = "proto3";
package containerd.services.containers.v1;
message Any { string type_url = 1; bytes value = 2; }
message FieldMask { repeated string paths = 1; }
message Container { string id = 1; Any spec = 5; }
message GetContainerRequest { string id = 1; }
message GetContainerResponse { Container container = 1; }
message UpdateContainerRequest { Container container = 1; FieldMask update_mask = 2; }
message UpdateContainerResponse { Container container = 1; }
`;

const root = protobuf.parse(CONTAINERS_PROTO, { keepCase: true }).root;
const type = (name: string): protobuf.Type => root.lookupType(`containerd.services.containers.v1.${name}`);

interface ContainerMessage {
  id: string;
  spec?: { type_url: string; value: Uint8Array };
}

async function call(api: { address: string; namespace: string }, method: 'Get' | 'Update', request: object): Promise<{ container?: ContainerMessage }> {
  const client = new grpc.Client(`unix://${api.address}`, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  metadata.set('containerd-namespace', api.namespace);
  const req = type(`${method === 'Get' ? 'GetContainer' : 'UpdateContainer'}Request`);
  const res = type(`${method === 'Get' ? 'GetContainer' : 'UpdateContainer'}Response`);
  try {
    return await new Promise((resolve, reject) => {
      client.makeUnaryRequest(
        `/containerd.services.containers.v1.Containers/${method}`,
        (msg: object) => Buffer.from(req.encode(req.fromObject(msg)).finish()),
        (bytes: Buffer) => res.toObject(res.decode(bytes)) as { container?: ContainerMessage },
        request,
        metadata,
        { deadline: Date.now() + 30_000 },
        (err, value) => (err || !value ? reject(err ?? new Error(`Containers/${method}: no answer`)) : resolve(value)),
      );
    });
  } finally {
    client.close();
  }
}

/** The container's spec as containerd stores it (the JSON ctr wrote). */
export async function readContainerSpec(api: { address: string; namespace: string }, id: string): Promise<Record<string, unknown>> {
  const { container } = await call(api, 'Get', { id });
  if (!container?.spec) throw new Error(`container ${id} has no spec`);
  return JSON.parse(Buffer.from(container.spec.value).toString('utf8')) as Record<string, unknown>;
}

/** Replaces the container's spec; nothing else of the container changes. */
export async function replaceContainerSpec(api: { address: string; namespace: string }, id: string, spec: object): Promise<void> {
  const { container } = await call(api, 'Get', { id });
  const typeUrl = container?.spec?.type_url ?? 'types.containerd.io/opencontainers/runtime-spec/1/Spec';
  await call(api, 'Update', { container: { id, spec: { type_url: typeUrl, value: Buffer.from(JSON.stringify(spec)) } }, update_mask: { paths: ['spec'] } });
}
