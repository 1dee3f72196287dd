import * as protobuf from 'protobufjs';
import { AGENT_SERVICE, messageTypesOf, prepareCodecs, readProtoRoot } from './protos';

/** A root of its own, so no other test has set up one of its types. */
const freshRoot = readProtoRoot;

describe('messageTypesOf', () => {
  it("finds a service's requests and responses and the message types of their fields, nested ones too", () => {
    const names = messageTypesOf(freshRoot().lookupService(AGENT_SERVICE)).map((t) => t.fullName);
    expect(names).toEqual(expect.arrayContaining(['.katats.agent.v1.UpdateInterfaceRequest', '.katats.agent.v1.Interface', '.katats.agent.v1.IPAddress', '.katats.agent.v1.UpdateRoutesRequest', '.katats.agent.v1.Route']));
    expect(new Set(names).size).toBe(names.length);
  });

  it('ends on a type that holds itself, and follows map values', () => {
    const root = new protobuf.Root()
      .add(new protobuf.Type('Tree').add(new protobuf.Field('child', 1, 'Tree')).add(new protobuf.MapField('leaves', 2, 'string', 'Leaf')))
      .add(new protobuf.Type('Leaf').add(new protobuf.Field('name', 1, 'string')))
      .add(new protobuf.Type('Empty'))
      .add(new protobuf.Service('S').add(new protobuf.Method('Grow', 'rpc', 'Tree', 'Empty')));
    expect(messageTypesOf(root.lookupService('S')).map((t) => t.name).sort()).toEqual(['Empty', 'Leaf', 'Tree']);
  });
});

describe('prepareCodecs', () => {
  afterEach(() => jest.restoreAllMocks());

  it('leaves nothing for a first decode or encode to generate', () => {
    // The bytes from a root of their own: encoding them here would set the types up.
    const writer = freshRoot().lookupType('katats.agent.v1.UpdateInterfaceRequest');
    const bytes = writer.encode(writer.fromObject({ interface: { name: 'eth0', hw_addr: '02:00:00:00:00:01', addresses: [{ address: '10.0.0.2', prefix_length: 24 }] } })).finish();
    const root = freshRoot();
    const types = messageTypesOf(root.lookupService(AGENT_SERVICE));
    const request = root.lookupType('katats.agent.v1.UpdateInterfaceRequest');

    prepareCodecs(types);
    const codegen = jest.spyOn(protobuf.util, 'codegen');
    const decoded = request.toObject(request.decode(bytes));
    const reply = root.lookupType('katats.agent.v1.Interface');
    reply.encode(reply.fromObject(decoded.interface as object)).finish();

    expect(decoded.interface.addresses).toEqual([{ address: '10.0.0.2', prefix_length: 24 }]);
    expect(codegen).not.toHaveBeenCalled();
  });

  it('is what a first use would otherwise generate (the check above can fail)', () => {
    const root = freshRoot();
    const request = root.lookupType('katats.agent.v1.UpdateRoutesRequest');
    const codegen = jest.spyOn(protobuf.util, 'codegen');
    request.decode(request.encode(request.fromObject({ routes: { routes: [{ destination: '10.0.0.0/8' }] } })).finish());
    expect(codegen).toHaveBeenCalled();
  });
});
