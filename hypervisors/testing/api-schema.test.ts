// Self-test of the validator the fake VMMs run, and a cross-check that our request
// builders produce bodies our upstream-derived descriptions accept, including the
// fields the driver tests do not happen to send.
import { buildClhVmConfig, clhResize } from '../cloud-hypervisor/vm-config';
import { buildFirecrackerPlan } from '../firecracker/vm-config';
import { checkRequest, ObjectSchema, violations } from './api-schema';
import { CLOUD_HYPERVISOR_API } from './cloud-hypervisor-api';
import { FIRECRACKER_API } from './firecracker-api';
import { vmConfigIn } from './vm-fixture';

const schema: ObjectSchema = {
  type: 'object',
  required: ['name', 'count'],
  additionalProperties: false,
  properties: {
    name: { type: 'string', pattern: /^[a-z]+$/ },
    count: { type: 'integer', minimum: 1, maximum: 32 },
    mode: { type: 'string', enum: ['On', 'Off'] },
    flag: { type: 'boolean' },
    items: { type: 'array', items: { type: 'object', properties: { id: { type: 'string' } }, required: ['id'], additionalProperties: false } },
    open: { type: 'object', properties: {}, additionalProperties: true },
  },
};

describe('API schema validator', () => {
  it('accepts a conforming body', () => {
    expect(violations(schema, { name: 'a', count: 32, mode: 'On', flag: false, items: [{ id: 'x' }], open: { anything: 1 } })).toEqual([]);
  });

  it('rejects missing required fields, wrong types and unknown fields, each with its path', () => {
    expect(violations(schema, { count: 1.5, flag: 'yes', extra: 1, items: [{}], open: [] })).toEqual([
      'body.name: required',
      'body.count: must be an integer, got number 1.5',
      'body.flag: must be a boolean, got string "yes"',
      'body.extra: unknown field (known: name, count, mode, flag, items, open)',
      'body.items[0].id: required',
      'body.open: must be an object, got an array',
    ]);
    expect(violations(schema, null)).toEqual(['body: must be an object, got null']);
  });

  it('enforces enums, bounds and patterns', () => {
    expect(violations(schema, { name: 'A1', count: 0, mode: 'on' })).toEqual([
      'body.name: must match /^[a-z]+$/, got "A1"',
      'body.count: must be at least 1, got 0',
      'body.mode: must be one of On, Off, got "on"',
    ]);
    expect(violations(schema, { name: 'a', count: 33 })).toEqual(['body.count: must be at most 32, got 33']);
  });

  it('matches endpoints by path and method and checks path parameters against the body', () => {
    expect(checkRequest(FIRECRACKER_API, 'GET', '/nope', undefined)).toEqual({ ok: false, status: 404, problems: ['no endpoint /nope'] });
    expect(checkRequest(FIRECRACKER_API, 'PUT', '/vm', { state: 'Paused' })).toEqual({ ok: false, status: 405, problems: ['/vm takes PATCH, not PUT'] });
    expect(checkRequest(FIRECRACKER_API, 'PUT', '/drives/a', { drive_id: 'b', is_root_device: false })).toMatchObject({
      status: 400,
      problems: ['body.drive_id: must equal the path\'s {drive_id} "a"'],
    });
    expect(checkRequest(FIRECRACKER_API, 'PUT', '/boot-source', undefined)).toMatchObject({ status: 400, problems: ['body: required'] });
    expect(checkRequest(CLOUD_HYPERVISOR_API, 'PUT', '/api/v1/vm.boot', {})).toMatchObject({ status: 400, problems: ['body: this endpoint takes none'] });
    expect(checkRequest(CLOUD_HYPERVISOR_API, 'PUT', '/api/v1/vm.boot', undefined)).toMatchObject({ ok: true });
  });
});

describe('our request builders against the upstream-derived descriptions', () => {
  const vm = vmConfigIn('/w', 'vmm', { network: { netnsPath: '/var/run/netns/cni-1', nics: [{ tapName: 'tap0_kata', mac: '5a:1b:2c:3d:4e:5f' }] } });
  const devices = [
    { kind: 'block', id: 'disk0', hostPath: '/d', readOnly: true },
    { kind: 'network', id: 'eth0', tapName: 'tap0' },
  ] as const;

  it('Cloud Hypervisor vm.create with every feature we map, and vm.resize', () => {
    const full = buildClhVmConfig({ ...vm, sharedDirectories: [{ tag: 't', hostPath: '/s' }], maxVcpus: 4, maxMemoryMiB: 768 }, { virtiofsdPath: 'virtiofsd' }, devices);
    expect(checkRequest(CLOUD_HYPERVISOR_API, 'PUT', '/api/v1/vm.create', full)).toMatchObject({ ok: true });
    expect(checkRequest(CLOUD_HYPERVISOR_API, 'PUT', '/api/v1/vm.resize', clhResize(full, { vcpus: 3, memoryMiB: 600 }))).toMatchObject({ ok: true });
  });

  it('Firecracker pre-boot requests', () => {
    const plan = buildFirecrackerPlan(vm, devices);
    const requests: Array<[string, object]> = [
      ['/boot-source', plan.bootSource],
      ['/machine-config', plan.machineConfig],
      ['/vsock', plan.vsock],
      ...plan.drives.map((d): [string, object] => [`/drives/${d.drive_id}`, d]),
      ...plan.networkInterfaces.map((n): [string, object] => [`/network-interfaces/${n.iface_id}`, n]),
    ];
    for (const [path, body] of requests) expect([path, checkRequest(FIRECRACKER_API, 'PUT', path, body)]).toEqual([path, expect.objectContaining({ ok: true })]);
  });
});
