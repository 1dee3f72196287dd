import { daemonArgs, parseFlags } from './flags';
import { shimSocketPath, stateDirFromBundle } from './socket';

describe('shim flags', () => {
  it('parses what containerd 1.6 passes to start', () => {
    const flags = parseFlags(['-namespace', 'k8s.io', '-address', '/run/containerd/containerd.sock', '-publish-binary', '/usr/bin/containerd', '-id', 'abc', '-debug', 'start']);
    expect(flags).toMatchObject({ namespace: 'k8s.io', address: '/run/containerd/containerd.sock', publishBinary: '/usr/bin/containerd', id: 'abc', debug: true, action: 'start' });
  });

  it('accepts -flag=value and ignores flags it does not know', () => {
    expect(parseFlags(['--id=x', '-bundle=/b', '-future-flag', 'delete'])).toMatchObject({ id: 'x', bundle: '/b', action: 'delete' });
  });

  it('round-trips the daemon arguments', () => {
    const flags = parseFlags(['-namespace', 'n', '-address', 'a', '-publish-binary', 'p', '-id', 'i', 'start']);
    expect(parseFlags(daemonArgs(flags, '/s/sock'))).toMatchObject({ namespace: 'n', address: 'a', id: 'i', socket: '/s/sock', action: 'daemon' });
  });
});

describe('shim socket path', () => {
  const bundle = '/tmp/kt-1/state/io.containerd.runtime.v2.task/ns1/c1';
  it("lives under containerd's state dir", () => {
    expect(stateDirFromBundle(bundle)).toBe('/tmp/kt-1/state');
    expect(shimSocketPath(bundle, '/tmp/kt-1/c.sock', 'ns1', 'c1')).toMatch(/^\/tmp\/kt-1\/state\/s\/[0-9a-f]{32}$/);
  });
  it('is the same for every container of a pod and differs between pods and namespaces', () => {
    const other = '/tmp/kt-1/state/io.containerd.runtime.v2.task/ns1/c2';
    expect(shimSocketPath(bundle, 'a', 'ns1', 'pod')).toBe(shimSocketPath(other, 'a', 'ns1', 'pod'));
    expect(shimSocketPath(bundle, 'a', 'ns1', 'pod')).not.toBe(shimSocketPath(bundle, 'a', 'ns1', 'pod2'));
    expect(shimSocketPath(bundle, 'a', 'ns1', 'pod')).not.toBe(shimSocketPath(bundle, 'a', 'ns2', 'pod'));
  });
  it('falls back to /run/kata-ts for bundles outside a containerd state dir', () => {
    expect(stateDirFromBundle('/somewhere/else')).toBe('/run/kata-ts');
  });
});
