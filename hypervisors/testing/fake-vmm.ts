// A fake cloud-hypervisor / firecracker / virtiofsd that drivers spawn as if it were
// the real binary (see fake-vmm-binary.ts). It parses the same flags, serves the REST
// API on the socket named on its command line, checks EVERY request against our API
// description (api-schema.ts), records command line and requests as JSON lines, and
// answers with the real VMM's status codes and error bodies. Once the fake VM boots it
// emulates the hybrid vsock socket and writes to the guest console.
// Runs as its own node process, transpiled from this folder: it imports only node
// built-ins and sibling files of hypervisors/testing/.
import * as fs from 'fs';
import * as http from 'http';
import * as net from 'net';
import { ApiDescription, checkRequest, Endpoint } from './api-schema';
import { fakeCloudHypervisor } from './fake-cloud-hypervisor';
import { serveHybridVsock } from './fake-hybrid-vsock';
import { fakeFirecracker } from './fake-firecracker';

export type FakeFlavourName = 'cloud-hypervisor' | 'firecracker' | 'virtiofsd';

export interface FakeVmmOptions {
  flavour: FakeFlavourName;
  /** JSON lines: `{argv}` first, then `{method, path, body, status}` per request. */
  recordPath: string;
  /** Die on this request before answering, like a VMM crashing mid-start. */
  crashOn?: { method: string; path: string; exitCode: number; stderr: string };
  /** vsock ports the fake guest listens on once booted. */
  guestPorts?: number[];
  /** What the fake guest prints on its console once booted. */
  consoleText?: string;
}

export type RecordedEntry = { argv: string[] } | RecordedRequest;
export interface RecordedRequest {
  method: string;
  path: string;
  body?: unknown;
  status: number | 'crashed';
}

export interface FakeAnswer {
  status: number;
  body?: unknown;
  /** The fake VM boots now: serve hybrid vsock there, print the console there (else stdout). */
  boot?: { vsockSocket: string; consoleFile?: string };
  /** The VMM exits after answering (vmm.shutdown, a guest reboot). */
  exitAfter?: boolean;
}

export interface FakeFlavour {
  api: ApiDescription;
  /** Flags it accepts, each taking a value (`--flag v` or `--flag=v`). */
  flags: readonly string[];
  apiSocket(flags: Map<string, string>): string | undefined;
  /** The upstream error body for `message`. */
  errorBody(message: string): unknown;
  /** Answers a request that passed the schema check. */
  handle(endpoint: Endpoint, params: Record<string, string>, body: unknown): FakeAnswer;
}

/** The Rust virtiofsd's value-taking flags, and its switches (no value). */
const VIRTIOFSD_FLAGS = ['--socket-path', '--shared-dir', '--cache', '--sandbox', '--seccomp', '--modcaps', '--log-level'];
const VIRTIOFSD_SWITCHES = ['--announce-submounts'];

export function main(options: FakeVmmOptions, argv: string[]): void {
  if (options.flavour === 'virtiofsd' && argv[0] === '--version') {
    // What the Rust virtiofsd prints; the driver picks its flags by it.
    process.stdout.write('virtiofsd 1.13.0\n');
    return;
  }
  record(options, { argv });
  // Like the real daemons, remove the sockets we created when we go (SIGTERM included).
  const sockets: string[] = [];
  process.on('exit', () => sockets.forEach((s) => fs.rmSync(s, { force: true })));
  process.on('SIGTERM', () => process.exit(143));
  if (options.flavour === 'virtiofsd') {
    // A vhost-user backend only needs its socket to exist for our driver.
    const socketPath = parseFlags(argv, VIRTIOFSD_FLAGS, VIRTIOFSD_SWITCHES).get('--socket-path') ?? die('error: --socket-path is required');
    sockets.push(socketPath);
    net.createServer((s) => s.resume()).listen(socketPath);
    return;
  }
  const flavour = options.flavour === 'cloud-hypervisor' ? fakeCloudHypervisor() : fakeFirecracker();
  const socketPath = flavour.apiSocket(parseFlags(argv, flavour.flags)) ?? die(`error: the API socket flag (${flavour.flags.join(' or ')}) is required`);
  sockets.push(socketPath);
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const answer = answerRequest(options, flavour, req.method ?? '', req.url ?? '', Buffer.concat(chunks).toString('utf8'));
      if (answer.boot) {
        sockets.push(answer.boot.vsockSocket);
        void serveHybridVsock(answer.boot.vsockSocket, { isListening: (port) => (options.guestPorts ?? []).includes(port) });
        if (options.consoleText) {
          if (answer.boot.consoleFile) fs.appendFileSync(answer.boot.consoleFile, options.consoleText);
          else process.stdout.write(options.consoleText);
        }
      }
      res.writeHead(answer.status, { 'Content-Type': 'application/json' });
      res.end(answer.body === undefined ? '' : JSON.stringify(answer.body));
      if (answer.exitAfter) res.on('finish', () => process.exit(0));
    });
  });
  server.listen(socketPath);
}

function answerRequest(options: FakeVmmOptions, flavour: FakeFlavour, method: string, path: string, text: string): FakeAnswer {
  const crash = options.crashOn;
  if (crash && crash.method === method && crash.path === path) {
    record(options, { method, path, status: 'crashed' });
    process.stderr.write(crash.stderr);
    process.exit(crash.exitCode);
  }
  let body: unknown;
  let answer: FakeAnswer;
  try {
    body = text ? JSON.parse(text) : undefined;
    const check = checkRequest(flavour.api, method, path, body);
    answer = check.ok ? flavour.handle(check.endpoint, check.params, body) : { status: check.status, body: flavour.errorBody(check.problems.join('; ')) };
  } catch (err) {
    answer = { status: 400, body: flavour.errorBody(`cannot parse the request: ${(err as Error).message}`) };
  }
  record(options, { method, path, ...(body === undefined ? {} : { body }), status: answer.status });
  return answer;
}

function parseFlags(argv: string[], known: readonly string[], switches: readonly string[] = []): Map<string, string> {
  const values = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    if (switches.includes(flag) && inline === undefined) {
      values.set(flag, '');
      continue;
    }
    if (!known.includes(flag)) die(`error: unexpected argument '${argv[i]}' found`);
    const value = inline ?? argv[++i];
    if (value === undefined) die(`error: a value is required for '${flag}'`);
    values.set(flag, value);
  }
  return values;
}

function record(options: FakeVmmOptions, entry: RecordedEntry): void {
  fs.appendFileSync(options.recordPath, JSON.stringify(entry) + '\n');
}

function die(message: string): never {
  process.stderr.write(message + '\n');
  process.exit(2);
}
