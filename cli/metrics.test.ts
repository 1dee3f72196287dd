import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';
import { defaultConfig, RuntimeConfig } from '../config/runtime-config';
import { FailedPreconditionError, NotFoundError } from '../lib/errors';
import { monitorSocketPath, writeSandboxIdentity } from '../lib/shim-monitor';
import { findManagementSocket, readSandboxMetrics } from './metrics';

describe('kata-ts-runtime metrics', () => {
  let stateDir: string;
  let config: RuntimeConfig;
  const servers: http.Server[] = [];

  /** A shim's management socket for `id` in `namespace`, in the work dir `dirName` (hashed or readable). */
  async function shim(dirName: string, id: string, namespace: string): Promise<string> {
    const workDir = path.join(stateDir, dirName);
    fs.mkdirSync(workDir, { recursive: true });
    writeSandboxIdentity(workDir, { id, namespace, cri: { name: '', namespace: '', uid: '' } });
    const server = http.createServer((_req, res) => res.end(`sandbox_up{id="${id}",ns="${namespace}"} 1\n`));
    servers.push(server);
    await new Promise<void>((r) => server.listen(monitorSocketPath(workDir), r));
    return monitorSocketPath(workDir);
  }

  beforeEach(() => {
    stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-metrics-'));
    config = defaultConfig();
    config.runtime.stateDir = stateDir;
  });

  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
    fs.rmSync(stateDir, { recursive: true, force: true });
  });

  it('finds a sandbox by id, also in a hashed work dir, and reads its metrics', async () => {
    await shim('default/plain', 'plain', 'default');
    const hashed = await shim('.hashed/00ff', 'long-id', 'k8s.io');
    expect(findManagementSocket(config, 'long-id')).toBe(hashed);
    expect(await readSandboxMetrics(findManagementSocket(config, 'plain', 'default'))).toBe('sandbox_up{id="plain",ns="default"} 1\n');
  });

  it('asks for the namespace when the id is in two, and says when there is none', async () => {
    await shim('default/twin', 'twin', 'default');
    await shim('k8s.io/twin', 'twin', 'k8s.io');
    expect(() => findManagementSocket(config, 'twin')).toThrow(new FailedPreconditionError('sandbox twin exists in namespaces default, k8s.io; name one with --namespace'));
    expect(findManagementSocket(config, 'twin', 'k8s.io')).toBe(monitorSocketPath(path.join(stateDir, 'k8s.io', 'twin')));
    expect(() => findManagementSocket(config, 'absent', 'default')).toThrow(NotFoundError);
  });
});
