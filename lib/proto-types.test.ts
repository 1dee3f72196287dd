import * as fs from 'fs';
import * as path from 'path';
import * as protobuf from 'protobufjs';
import { GENERATED_TYPES, generateProtoTypes } from '../scripts/generate-proto-types';
import type { containerd } from './proto-types';
import { protoDescriptorText } from './proto-descriptor';
import { AGENT_SERVICE, decodeAs, encodeAs, EVENTS_SERVICE, lookupService, PROTO_DESCRIPTOR, protosDir, TASK_SERVICE } from './protos';

describe('generated protocol types', () => {
  it('are those of the .proto files as they are now (run `make protos` after changing one)', () => {
    const committed = fs.readFileSync(path.join(protosDir(), GENERATED_TYPES), 'utf8');
    expect(generateProtoTypes()).toBe(committed);
  });

  it('include the run-time descriptor of the .proto files as they are now (run `make protos` after changing one)', () => {
    const committed = fs.readFileSync(path.join(protosDir(), PROTO_DESCRIPTOR), 'utf8');
    expect(protoDescriptorText()).toBe(committed);
  });
});

describe('decoded messages', () => {
  // Decoded<T> (proto-types.ts) promises every scalar, repeated and map field present
  // and message fields null when absent: check that against what decoding really gives,
  // for the request and response of every method we serve or call.
  const services = [TASK_SERVICE, AGENT_SERVICE, EVENTS_SERVICE].map(lookupService);
  const messages = new Map<string, protobuf.Type>();
  for (const service of services) {
    for (const method of service.methodsArray) {
      method.resolve();
      for (const type of [method.resolvedRequestType!, method.resolvedResponseType!]) messages.set(type.fullName, type);
    }
  }

  it.each([...messages.keys()])('%s from no bytes has the shape Decoded<T> describes', (name) => {
    const type = messages.get(name)!;
    const decoded = decodeAs<Record<string, unknown>>(name.replace(/^\./, ''), new Uint8Array()) as Record<string, unknown>;
    for (const field of type.fieldsArray) {
      field.resolve();
      const value = decoded[field.name];
      if (field.map) expect(value).toEqual({});
      else if (field.repeated) expect(value).toEqual([]);
      else if (field.resolvedType instanceof protobuf.Type) expect(value).toBeNull();
      else if (field.type === 'bytes') expect(Buffer.isBuffer(value)).toBe(true);
      else if (field.resolvedType instanceof protobuf.Enum || /int|fixed|double|float/.test(field.type)) expect(typeof value).toBe('number');
      else if (field.type === 'bool') expect(value).toBe(false);
      else expect(value).toBe('');
    }
  });

  it('skip fields we do not know, as a newer containerd may send, and keep the ones we do', () => {
    const known = encodeAs<containerd.task.v2.ICreateTaskRequest>('containerd.task.v2.CreateTaskRequest', { id: 'c1', bundle: '/b', terminal: true });
    const writer = protobuf.Writer.create();
    writer.uint32((99 << 3) | 2).string('a field from the future'); // length-delimited
    writer.uint32((100 << 3) | 0).uint64(7); // varint
    writer.uint32((101 << 3) | 5).fixed32(1); // 32-bit
    const unknown = writer.finish();
    const decoded = decodeAs<containerd.task.v2.ICreateTaskRequest>('containerd.task.v2.CreateTaskRequest', Buffer.concat([known, unknown]));
    expect(decoded).toMatchObject({ id: 'c1', bundle: '/b', terminal: true, stdin: '', rootfs: [], options: null });
    expect(Object.keys(decoded)).not.toContain('99');
  });
});
