import { batchInput, iptablesRestoreInput } from './netns-batch';

describe('batch input for ip, tc and iptables-restore', () => {
  it('puts one command on each line', () => {
    expect(batchInput([['link', 'set', 'dev', 'tap0_kata', 'up'], ['addr', 'add', '10.0.0.1/30', 'dev', 'tap0_kata']])).toBe('link set dev tap0_kata up\naddr add 10.0.0.1/30 dev tap0_kata\n');
  });

  it('refuses a word the batch parser would read otherwise: white space, a comment, a quote, a line joined to the next', () => {
    expect(() => batchInput([['link', 'set', 'dev', 'eth0\nlink del dev eth1']])).toThrow(/cannot wire "eth0\\nlink del dev eth1": an interface name with white space/);
    // Names the kernel takes (it refuses only white space, '/' and ':'), which would wire eth1, or fail obscurely.
    for (const name of ['a b', '', 'eth1#x', "'eth1'", '"eth1"', 'eth1\\']) expect(() => batchInput([['qdisc', 'add', 'dev', name, 'ingress']])).toThrow(/cannot wire .*rename the pod interface/);
    expect(batchInput([['qdisc', 'add', 'dev', 'eth-1_a.b@c', 'ingress']])).toBe('qdisc add dev eth-1_a.b@c ingress\n');
  });

  it('appends rules table by table, quoting words with spaces', () => {
    const input = iptablesRestoreInput([
      ['nat', 'OUTPUT', '-p', 'tcp', '-m', 'comment', '--comment', 'two words', '-j', 'ACCEPT'],
      ['raw', 'PREROUTING', '-j', 'DROP'],
      ['nat', 'POSTROUTING', '-o', 'tap0_kata', '-j', 'ACCEPT'],
    ]);
    expect(input).toBe('*nat\n-A OUTPUT -p tcp -m comment --comment "two words" -j ACCEPT\n-A POSTROUTING -o tap0_kata -j ACCEPT\nCOMMIT\n*raw\n-A PREROUTING -j DROP\nCOMMIT\n');
  });

  it('refuses a word its parser would take apart', () => {
    expect(() => iptablesRestoreInput([['nat', 'OUTPUT', '--comment', 'say "hi"']])).toThrow(/cannot pass/);
    expect(() => iptablesRestoreInput([['nat', 'OUTPUT', '--comment', 'a\nCOMMIT']])).toThrow(/cannot pass/);
    expect(() => iptablesRestoreInput([['nat', 'OUTPUT', '--comment', 'a\\']])).toThrow(/cannot pass/);
  });
});
