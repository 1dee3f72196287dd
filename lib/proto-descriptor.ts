// Build-time only: parses the project's .proto files (full protobufjs, with its .proto
// parser) into the descriptor that lib/protos.ts loads at run time. The shim daemon and
// the guest agent then skip the parse on every start: under TCG the agent's parse of
// these files cost a few hundred ms of each cold boot.
//   make protos   (after changing a .proto file; a unit test fails while it is stale)
import * as path from 'path';
import * as protobuf from 'protobufjs';
import { protosDir } from './protos';

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

/** The .proto files parsed as lib/protos.ts always read them: snake_case field names (keepCase). */
export function parseProtoFiles(dir = protosDir()): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    // google/protobuf/* come with protobufjs (common types); ours live under protos/.
    if (target.startsWith('google/protobuf/')) return target;
    return path.isAbsolute(target) ? target : path.join(dir, target);
  };
  root.loadSync(PROTO_FILES, { keepCase: true });
  root.resolveAll();
  return root;
}

/** protos/generated/descriptor.json's text for the current .proto files. */
export function protoDescriptorText(dir = protosDir()): string {
  return `${JSON.stringify(parseProtoFiles(dir).toJSON(), null, 1)}\n`;
}
