// The part of Firecracker's REST API our driver uses, as our own description.
// Checked against firecracker-microvm/firecracker src/firecracker/swagger/firecracker.yaml
// (Swagger 2.0, "version: 1.17.0-dev") at commit 81b38b9dad6056d7a48073e95ac5a9aed51cb2ab,
// and the request parsers behind it (src/firecracker/src/api_server/): the body structs
// are `deny_unknown_fields` (closed objects below), path ids must be non-empty
// alphanumerics or '_' (`checked_id`; we allow ASCII only) and a drive's or interface's
// body id must equal its path id. Errors are 400 with {"fault_message": "..."}.
import { ApiDescription, Schema, StringSchema } from './api-schema';

const string: Schema = { type: 'string' };
const boolean: Schema = { type: 'boolean' };
const id: StringSchema = { type: 'string', pattern: /^[A-Za-z0-9_]+$/ };

export const FIRECRACKER_API: ApiDescription = {
  name: 'firecracker',
  checkedAgainst: 'firecracker src/firecracker/swagger/firecracker.yaml @ 81b38b9dad6056d7a48073e95ac5a9aed51cb2ab',
  endpoints: [
    { method: 'GET', path: '/', success: 200 },
    {
      method: 'PUT',
      path: '/boot-source',
      body: { type: 'object', properties: { kernel_image_path: string, initrd_path: string, boot_args: string }, required: ['kernel_image_path'], additionalProperties: false },
      success: 204,
    },
    {
      method: 'PUT',
      path: '/machine-config',
      body: {
        type: 'object',
        properties: { vcpu_count: { type: 'integer', minimum: 1, maximum: 32 }, mem_size_mib: { type: 'integer' }, smt: boolean },
        required: ['mem_size_mib', 'vcpu_count'],
        additionalProperties: false,
      },
      success: 204,
    },
    {
      method: 'PUT',
      path: '/drives/{drive_id}',
      params: { drive_id: id },
      body: {
        type: 'object',
        properties: { drive_id: string, is_root_device: boolean, path_on_host: string, is_read_only: boolean },
        required: ['drive_id', 'is_root_device'],
        additionalProperties: false,
      },
      bodyRepeatsParam: 'drive_id',
      success: 204,
    },
    {
      method: 'PUT',
      path: '/network-interfaces/{iface_id}',
      params: { iface_id: id },
      body: { type: 'object', properties: { iface_id: string, host_dev_name: string, guest_mac: string }, required: ['host_dev_name', 'iface_id'], additionalProperties: false },
      bodyRepeatsParam: 'iface_id',
      success: 204,
    },
    {
      method: 'PUT',
      path: '/vsock',
      body: { type: 'object', properties: { guest_cid: { type: 'integer', minimum: 3 }, uds_path: string }, required: ['guest_cid', 'uds_path'], additionalProperties: false },
      success: 204,
    },
    {
      method: 'PUT',
      path: '/actions',
      body: {
        type: 'object',
        properties: { action_type: { type: 'string', enum: ['FlushMetrics', 'InstanceStart', 'SendCtrlAltDel'] } },
        required: ['action_type'],
        additionalProperties: false,
      },
      success: 204,
    },
    {
      method: 'PATCH',
      path: '/vm',
      body: { type: 'object', properties: { state: { type: 'string', enum: ['Paused', 'Resumed'] } }, required: ['state'], additionalProperties: false },
      success: 204,
    },
  ],
};
