import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { applyPodNetworkSysctls } from './pod-sysctls';

describe('net.* sysctls of a container on the pod network', () => {
  let procSys: string;
  beforeEach(() => {
    procSys = fs.mkdtempSync(path.join(os.tmpdir(), 'pod-sysctls-'));
    fs.mkdirSync(path.join(procSys, 'net/ipv4'), { recursive: true });
    fs.writeFileSync(path.join(procSys, 'net/ipv4/ip_unprivileged_port_start'), '1024');
  });
  afterEach(() => fs.rmSync(procSys, { recursive: true, force: true }));

  it("are written to the guest's namespace and removed from the spec; other sysctls stay", () => {
    const spec = { linux: { namespaces: [{ type: 'ipc', path: '/x' }], sysctl: { 'net.ipv4.ip_unprivileged_port_start': '0', 'kernel.shmmax': '1000' } } };
    expect(applyPodNetworkSysctls('c1', spec, procSys)).toEqual(['net.ipv4.ip_unprivileged_port_start']);
    expect(fs.readFileSync(path.join(procSys, 'net/ipv4/ip_unprivileged_port_start'), 'utf8')).toBe('0');
    expect(spec.linux.sysctl).toEqual({ 'kernel.shmmax': '1000' });
  });

  it('are left to the runtime when the container has a network namespace of its own', () => {
    const spec = { linux: { namespaces: [{ type: 'network' }], sysctl: { 'net.ipv4.ip_unprivileged_port_start': '0' } } };
    expect(applyPodNetworkSysctls('c1', spec, procSys)).toEqual([]);
    expect(spec.linux.sysctl).toEqual({ 'net.ipv4.ip_unprivileged_port_start': '0' });
    expect(fs.readFileSync(path.join(procSys, 'net/ipv4/ip_unprivileged_port_start'), 'utf8')).toBe('1024');
  });

  it.each([
    ['net.ipv4/../../kernel/core_pattern', '|/bin/sh'],
    ['net..ipv4', '1'],
    ['net.ipv4.ip_unprivileged_port_start', '0\n1'],
  ])('refuses key %j with value %j, writing nothing', (key, value) => {
    const spec = { linux: { sysctl: { [key]: value } } };
    expect(() => applyPodNetworkSysctls('c1', spec, procSys)).toThrow(/container c1: sysctl/);
    expect(fs.readFileSync(path.join(procSys, 'net/ipv4/ip_unprivileged_port_start'), 'utf8')).toBe('1024');
  });

  it('names the sysctl when the kernel has no such key', () => {
    const spec = { linux: { sysctl: { 'net.ipv4.no_such_knob': '1' } } };
    expect(() => applyPodNetworkSysctls('c1', spec, procSys)).toThrow("cannot set sysctl net.ipv4.no_such_knob=1 in the pod's network namespace");
  });
});
