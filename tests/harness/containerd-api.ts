// A small gRPC client for containerd's own API, for what `ctr` cannot do: update a
// task's resources (ctr 1.6 has no `task update`), and create a task without
// starting it (ctr has no `task create`). Messages are declared here with
// containerd's field numbers; the services are the same in containerd 1.6 to 2.x.
import * as grpc from '@grpc/grpc-js';
import * as protobuf from 'protobufjs';

const API_PROTO = `
syntax = "proto3";
package containerd.services.tasks.v1;
message Any { string type_url = 1; bytes value = 2; }
message Mount { string type = 1; string source = 2; string target = 3; repeated string options = 4; }
message Timestamp { int64 seconds = 1; int32 nanos = 2; }
message Empty {}
message UpdateTaskRequest { string container_id = 1; Any resources = 2; map<string, string> annotations = 3; }
message CreateTaskRequest { string container_id = 1; repeated Mount rootfs = 3; string stdin = 4; string stdout = 5; string stderr = 6; bool terminal = 7; }
message CreateTaskResponse { string container_id = 1; uint32 pid = 2; }
message KillRequest { string container_id = 1; string exec_id = 2; uint32 signal = 3; bool all = 4; }
message DeleteTaskRequest { string container_id = 1; }
message DeleteResponse { string id = 1; uint32 pid = 2; uint32 exit_status = 3; Timestamp exited_at = 4; }
message MountsRequest { string snapshotter = 1; string key = 2; }
message MountsResponse { repeated Mount mounts = 1; }
`;

const root = protobuf.parse(API_PROTO, { keepCase: true }).root;
const type = (name: string): protobuf.Type => root.lookupType(`containerd.services.tasks.v1.${name}`);

/** containerd's type URL for OCI LinuxResources carried as JSON. */
export const LINUX_RESOURCES_TYPE = 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources';

export interface ContainerdApi {
  address: string;
  namespace: string;
}

async function unary<T>(api: ContainerdApi, method: string, requestType: string, responseType: string, request: object): Promise<T> {
  const client = new grpc.Client(`unix://${api.address}`, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  metadata.set('containerd-namespace', api.namespace);
  const req = type(requestType);
  const res = type(responseType);
  try {
    return await new Promise<T>((resolve, reject) => {
      client.makeUnaryRequest(
        method,
        (msg: object) => Buffer.from(req.encode(req.fromObject(msg)).finish()),
        (bytes: Buffer) => res.toObject(res.decode(bytes), { longs: Number, defaults: true }) as T,
        request,
        metadata,
        { deadline: Date.now() + 240_000 },
        (err, value) => (err ? reject(err) : resolve(value as T)),
      );
    });
  } finally {
    client.close();
  }
}

export async function updateTaskResources(address: string, namespace: string, containerId: string, resources: object): Promise<void> {
  const request = { container_id: containerId, resources: { type_url: LINUX_RESOURCES_TYPE, value: Buffer.from(JSON.stringify(resources)) } };
  await unary({ address, namespace }, '/containerd.services.tasks.v1.Tasks/Update', 'UpdateTaskRequest', 'Empty', request);
}

/**
 * Tasks.Create for a container made by `ctr containers create` (its snapshot key is
 * its id), without stdio and without Start: the task stays CREATED, as when kubelet
 * gives up between CreateContainer and StartContainer.
 */
export async function createTask(api: ContainerdApi, containerId: string, snapshotter = 'overlayfs'): Promise<{ pid: number }> {
  const { mounts } = await unary<{ mounts: object[] }>(api, '/containerd.services.snapshots.v1.Snapshots/Mounts', 'MountsRequest', 'MountsResponse', { snapshotter, key: containerId });
  return unary(api, '/containerd.services.tasks.v1.Tasks/Create', 'CreateTaskRequest', 'CreateTaskResponse', { container_id: containerId, rootfs: mounts });
}

export async function killTask(api: ContainerdApi, containerId: string, signal: number): Promise<void> {
  await unary(api, '/containerd.services.tasks.v1.Tasks/Kill', 'KillRequest', 'Empty', { container_id: containerId, signal });
}

export async function deleteTask(api: ContainerdApi, containerId: string): Promise<{ exit_status: number; pid: number }> {
  return unary(api, '/containerd.services.tasks.v1.Tasks/Delete', 'DeleteTaskRequest', 'DeleteResponse', { container_id: containerId });
}
