// A small gRPC client for containerd's own API, for what `ctr` 1.6 cannot do
// (it has no `task update`). Messages are declared here with containerd's field numbers.
import * as grpc from '@grpc/grpc-js';
import * as protobuf from 'protobufjs';

const TASKS_PROTO = `
syntax = "proto3";
package containerd.services.tasks.v1;
message Any { string type_url = 1; bytes value = 2; }
message UpdateTaskRequest { string container_id = 1; Any resources = 2; map<string, string> annotations = 3; }
message Empty {}
`;

const root = protobuf.parse(TASKS_PROTO, { keepCase: true }).root;
const UpdateTaskRequest = root.lookupType('containerd.services.tasks.v1.UpdateTaskRequest');
const Empty = root.lookupType('containerd.services.tasks.v1.Empty');

/** containerd's type URL for OCI LinuxResources carried as JSON. */
export const LINUX_RESOURCES_TYPE = 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources';

export async function updateTaskResources(address: string, namespace: string, containerId: string, resources: object): Promise<void> {
  const client = new grpc.Client(`unix://${address}`, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  metadata.set('containerd-namespace', namespace);
  const request = { container_id: containerId, resources: { type_url: LINUX_RESOURCES_TYPE, value: Buffer.from(JSON.stringify(resources)) } };
  try {
    await new Promise<void>((resolve, reject) => {
      client.makeUnaryRequest(
        '/containerd.services.tasks.v1.Tasks/Update',
        (msg: object) => Buffer.from(UpdateTaskRequest.encode(UpdateTaskRequest.fromObject(msg)).finish()),
        (bytes: Buffer) => Empty.decode(bytes),
        request,
        metadata,
        { deadline: Date.now() + 60_000 },
        (err) => (err ? reject(err) : resolve()),
      );
    });
  } finally {
    client.close();
  }
}
