// The part of Cloud Hypervisor's REST API our driver uses, as our own description.
// Checked against cloud-hypervisor/cloud-hypervisor vmm/src/api/openapi/cloud-hypervisor.yaml
// (OpenAPI "version: 0.3.0") at commit ae44c2971c83dd2b1bd704fa81102ec0dec4e7d4
// (v53.0-246), and its HTTP server (vmm/src/api/http/mod.rs) for the error format.
//
// Upstream declares no `additionalProperties: false`, and its serde structs do not deny
// unknown fields: a misspelt field is silently ignored by the real VMM. Our objects are
// closed on purpose, so a field the driver sends that is not listed here (and so was
// never checked against upstream) fails the tests instead.
import { ApiDescription, ObjectSchema, Schema } from './api-schema';

const string: Schema = { type: 'string' };
const boolean: Schema = { type: 'boolean' };
const integer: Schema = { type: 'integer' };

/** ConsoleMode, shared by SerialConfig and ConsoleConfig. */
const consoleConfig: ObjectSchema = {
  type: 'object',
  properties: { mode: { type: 'string', enum: ['Off', 'Pty', 'Tty', 'File', 'Socket', 'Null'] }, file: string },
  required: ['mode'],
  additionalProperties: false,
};

export const diskConfig: ObjectSchema = {
  type: 'object',
  properties: { path: string, readonly: boolean, id: string },
  additionalProperties: false,
};

export const netConfig: ObjectSchema = {
  type: 'object',
  properties: { tap: string, mac: string, id: string },
  additionalProperties: false,
};

export const vmConfig: ObjectSchema = {
  type: 'object',
  required: ['payload'],
  additionalProperties: false,
  properties: {
    payload: { type: 'object', properties: { kernel: string, initramfs: string, cmdline: string }, additionalProperties: false },
    pmem: {
      type: 'array',
      items: { type: 'object', properties: { file: string, discard_writes: boolean }, required: ['file'], additionalProperties: false },
    },
    cpus: {
      type: 'object',
      properties: { boot_vcpus: { type: 'integer', minimum: 1 }, max_vcpus: { type: 'integer', minimum: 1 } },
      required: ['boot_vcpus', 'max_vcpus'],
      additionalProperties: false,
    },
    // Sizes are bytes (int64). `mergeable` (boolean, default false) checked at commit
    // 00f68228812d8dfeb50369c597b18e06cea42b10 of the same file.
    memory: { type: 'object', properties: { size: integer, hotplug_size: integer, shared: boolean, mergeable: boolean }, required: ['size'], additionalProperties: false },
    serial: consoleConfig,
    console: consoleConfig,
    rng: { type: 'object', properties: { src: string }, required: ['src'], additionalProperties: false },
    vsock: {
      type: 'object',
      properties: { cid: { type: 'integer', minimum: 3 }, socket: string },
      required: ['cid', 'socket'],
      additionalProperties: false,
    },
    disks: { type: 'array', items: diskConfig },
    net: { type: 'array', items: netConfig },
    fs: {
      type: 'array',
      items: {
        type: 'object',
        properties: { tag: string, socket: string, num_queues: integer, queue_size: integer },
        required: ['num_queues', 'queue_size', 'socket', 'tag'],
        additionalProperties: false,
      },
    },
  },
};

const V1 = '/api/v1';

export const CLOUD_HYPERVISOR_API: ApiDescription = {
  name: 'cloud-hypervisor',
  checkedAgainst: 'cloud-hypervisor vmm/src/api/openapi/cloud-hypervisor.yaml @ ae44c2971c83dd2b1bd704fa81102ec0dec4e7d4',
  endpoints: [
    { method: 'GET', path: `${V1}/vmm.ping`, success: 200 },
    { method: 'PUT', path: `${V1}/vmm.shutdown`, success: 204 },
    { method: 'GET', path: `${V1}/vm.info`, success: 200 },
    { method: 'PUT', path: `${V1}/vm.create`, body: vmConfig, success: 204 },
    { method: 'PUT', path: `${V1}/vm.boot`, success: 204 },
    { method: 'PUT', path: `${V1}/vm.pause`, success: 204 },
    { method: 'PUT', path: `${V1}/vm.resume`, success: 204 },
    { method: 'PUT', path: `${V1}/vm.shutdown`, success: 204 },
    // Answer 200 with PciDeviceInfo {id, bdf} when hot-plugged into a running VM.
    { method: 'PUT', path: `${V1}/vm.add-disk`, body: diskConfig, success: 200 },
    { method: 'PUT', path: `${V1}/vm.add-net`, body: netConfig, success: 200 },
    {
      method: 'PUT',
      path: `${V1}/vm.resize`,
      body: { type: 'object', properties: { desired_vcpus: { type: 'integer', minimum: 1 }, desired_ram: integer }, additionalProperties: false },
      success: 204,
    },
  ],
};
