// containerd invokes shims with Go-style flags: `-namespace ns -address sock -id x start`.
export interface ShimFlags {
  namespace: string;
  address: string;
  publishBinary: string;
  id: string;
  bundle: string;
  debug: boolean;
  /** Internal: the socket the daemon listens on (set by `start`). */
  socket: string;
  /** Internal, for a spare daemon (spare.ts): its pool directory, the pool's wanted size, and the niceness to return to once ready. */
  sparesDir: string;
  spares: string;
  nice: string;
  /** Internal, for a spare daemon with [factory] spare_vms: the configuration file its VM is restored by. */
  spareVmConfig: string;
  action: string;
}

const STRING_FLAGS: Record<string, keyof ShimFlags> = {
  namespace: 'namespace',
  address: 'address',
  'publish-binary': 'publishBinary',
  id: 'id',
  bundle: 'bundle',
  socket: 'socket',
  'spares-dir': 'sparesDir',
  spares: 'spares',
  nice: 'nice',
  'spare-vm-config': 'spareVmConfig',
};

export function parseFlags(argv: string[]): ShimFlags {
  const flags: ShimFlags = { namespace: '', address: '', publishBinary: '', id: '', bundle: '', debug: false, socket: '', sparesDir: '', spares: '', nice: '', spareVmConfig: '', action: '' };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('-')) {
      if (!flags.action) flags.action = arg;
      continue;
    }
    const body = arg.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const name = eq >= 0 ? body.slice(0, eq) : body;
    if (name === 'debug' || name === 'v') {
      if (name === 'debug') flags.debug = eq >= 0 ? body.slice(eq + 1) !== 'false' : true;
      else flags.action = 'version';
      continue;
    }
    const key = STRING_FLAGS[name];
    if (!key) continue; // flags of newer containerd versions we do not need
    const value = eq >= 0 ? body.slice(eq + 1) : argv[++i] ?? '';
    (flags as unknown as Record<string, string>)[key] = value;
  }
  return flags;
}

export function daemonArgs(flags: ShimFlags, socket: string): string[] {
  return ['-namespace', flags.namespace, '-address', flags.address, '-publish-binary', flags.publishBinary, '-id', flags.id, '-socket', socket, ...(flags.debug ? ['-debug'] : []), 'daemon'];
}

/** A spare daemon's arguments: a daemon's, without a pod (spare.ts). */
export function spareArgs(flags: ShimFlags, sparesDir: string, wanted: number, nice: number, spareVmConfig?: string): string[] {
  const vm = spareVmConfig ? ['-spare-vm-config', spareVmConfig] : [];
  return ['-namespace', flags.namespace, '-address', flags.address, '-publish-binary', flags.publishBinary, '-spares-dir', sparesDir, '-spares', String(wanted), '-nice', String(nice), ...vm, ...(flags.debug ? ['-debug'] : []), 'spare'];
}
