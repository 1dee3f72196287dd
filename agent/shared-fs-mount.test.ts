import { InvalidArgumentError } from '../lib/errors';
import { sharedFsMountArgs } from './shared-fs-mount';

describe('the shared directory mount', () => {
  it('mounts 9p when told so or told nothing, virtiofs when told so', () => {
    const p9 = ['-t', '9p', '-o', 'trans=virtio,version=9p2000.L,msize=262144,cache=none', 'kataShared', '/run/kata-ts/shared'];
    expect(sharedFsMountArgs('virtio-9p', 'kataShared', '/run/kata-ts/shared')).toEqual(p9);
    expect(sharedFsMountArgs('', 'kataShared', '/run/kata-ts/shared')).toEqual(p9);
    expect(sharedFsMountArgs('virtio-fs', 'kataShared', '/run/kata-ts/shared')).toEqual(['-t', 'virtiofs', 'kataShared', '/run/kata-ts/shared']);
  });

  it('refuses a type it does not know, naming it', () => {
    expect(() => sharedFsMountArgs('nfs', 't', '/x')).toThrow(new InvalidArgumentError('CreateSandbox: unknown shared filesystem type "nfs" (this agent mounts "virtio-9p" and "virtio-fs")'));
  });
});
