// The runtime options containerd passes in CreateTaskRequest.options: for a runtime
// configured with `[...runtimes.<name>.options] ConfigPath = "..."`, CRI packs them as
// runtimeoptions.v1.Options. containerd 1.6 writes the same Any to `start`'s stdin;
// the daemon loads the configuration at the first Create, so Create's copy is enough.
import { InvalidArgumentError } from '../lib/errors';
import { decodeAs } from '../lib/protos';
import { google, runtimeoptions } from '../lib/proto-types';

const RUNTIME_OPTIONS = 'runtimeoptions.v1.Options';

/** The ConfigPath the options name, if they are runtimeoptions.v1.Options that set one. */
export function configPathFromOptions(options: google.protobuf.IAny | null | undefined): string | undefined {
  // containerd 1.6 writes the bare message name; other clients prefix a host (type.googleapis.com/).
  const typeName = options?.type_url?.split('/').pop();
  if (typeName !== RUNTIME_OPTIONS) return undefined; // none, or another runtime's options (runc's): not ours to read
  let decoded: { config_path: string };
  try {
    decoded = decodeAs<runtimeoptions.v1.IOptions>(RUNTIME_OPTIONS, options?.value ?? new Uint8Array());
  } catch (err) {
    throw new InvalidArgumentError(`runtime options (${options?.type_url}) cannot be decoded: ${(err as Error).message}`);
  }
  return decoded.config_path || undefined;
}
