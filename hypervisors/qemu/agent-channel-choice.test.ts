import { chooseAgentChannel } from './agent-channel-choice';

const installed = { backendInstalled: (p: string) => p === '/usr/bin/vhost-device-vsock' };

describe('chooseAgentChannel', () => {
  it('keeps an explicit channel, whatever the host has', () => {
    expect(chooseAgentChannel('virtio-serial', { vsockBackend: '/usr/bin/vhost-device-vsock', ksm: 'unchanged' }, installed)).toEqual({ channel: 'virtio-serial', reason: 'agent_channel = "virtio-serial"' });
    expect(chooseAgentChannel('hybrid-vsock', { vsockBackend: '/nowhere', ksm: 'unchanged' }, installed).channel).toBe('hybrid-vsock');
  });

  it('auto: hybrid vsock where the backend is installed, naming it', () => {
    expect(chooseAgentChannel('auto', { vsockBackend: '/usr/bin/vhost-device-vsock', ksm: 'unchanged' }, installed)).toEqual({
      channel: 'hybrid-vsock',
      reason: 'agent_channel = "auto": /usr/bin/vhost-device-vsock is installed',
    });
  });

  it('auto: virtio-serial without a backend, saying where one was looked for and how to get it', () => {
    expect(chooseAgentChannel('auto', { vsockBackend: '/opt/vhost-device-vsock', ksm: 'off' }, installed)).toEqual({
      channel: 'virtio-serial',
      reason: 'agent_channel = "auto": no vsock backend at /opt/vhost-device-vsock (scripts/fetch-vhost-device-vsock.sh fetches one)',
    });
  });

  it('auto: virtio-serial with ksm = "on", which needs private guest RAM, even where the backend is installed', () => {
    const choice = chooseAgentChannel('auto', { vsockBackend: '/usr/bin/vhost-device-vsock', ksm: 'on' }, installed);
    expect(choice.channel).toBe('virtio-serial');
    expect(choice.reason).toMatch(/ksm = "on"/);
  });

  it('looks for the backend on the real host by default', () => {
    expect(chooseAgentChannel('auto', { vsockBackend: '/nonexistent/vhost-device-vsock', ksm: 'unchanged' }).channel).toBe('virtio-serial');
    expect(chooseAgentChannel('auto', { vsockBackend: process.execPath, ksm: 'unchanged' }).channel).toBe('hybrid-vsock');
  });
});
