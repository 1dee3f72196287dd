// Turns the fake VMM (fake-vmm.ts and its siblings) into executables a driver spawns
// as its binaryPath, for tests: this folder is transpiled to JavaScript once per test
// file, and each fake gets a small wrapper script with its behaviour baked in and its
// own record file, which the test reads back.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as ts from 'typescript';
import type { FakeVmmOptions, RecordedEntry, RecordedRequest } from './fake-vmm';

export class FakeVmmBinary {
  constructor(readonly path: string, private readonly recordPath: string) {}

  /** The command line the driver ran the fake with. */
  argv(): string[] {
    const first = this.entries()[0];
    if (!first || !('argv' in first)) throw new Error(`the fake ${this.path} never ran`);
    return first.argv;
  }

  /** Every request the fake received, in order, with the status it answered. */
  requests(): RecordedRequest[] {
    return this.entries().filter((e): e is RecordedRequest => 'method' in e);
  }

  private entries(): RecordedEntry[] {
    if (!fs.existsSync(this.recordPath)) return [];
    return fs.readFileSync(this.recordPath, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line) as RecordedEntry);
  }
}

export class FakeVmmKit {
  private count = 0;
  private constructor(private readonly dir: string, private readonly entryModule: string) {}

  /** Transpiles fake-vmm.ts and the sibling modules it requires into `dir` (per test file). */
  static compile(dir: string): FakeVmmKit {
    const out = path.join(dir, 'fake-vmm-js');
    fs.mkdirSync(out, { recursive: true });
    const pending = ['fake-vmm'];
    const done = new Set<string>();
    for (let name = pending.pop(); name !== undefined; name = pending.pop()) {
      if (done.has(name)) continue;
      done.add(name);
      const { outputText } = ts.transpileModule(fs.readFileSync(path.join(__dirname, `${name}.ts`), 'utf8'), {
        compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
        fileName: `${name}.ts`,
      });
      fs.writeFileSync(path.join(out, `${name}.js`), outputText);
      // Only siblings are followed: the fake must not need anything outside this folder.
      for (const [, sibling] of outputText.matchAll(/require\("\.\/([\w.-]+)"\)/g)) pending.push(sibling);
    }
    return new FakeVmmKit(dir, path.join(out, 'fake-vmm.js'));
  }

  /** A new executable fake with its own record file. */
  binary(options: Omit<FakeVmmOptions, 'recordPath'>): FakeVmmBinary {
    const name = `${options.flavour}-${++this.count}`;
    const recordPath = path.join(this.dir, `${name}.jsonl`);
    const executable = path.join(this.dir, name);
    const behaviour = JSON.stringify({ ...options, recordPath });
    fs.writeFileSync(executable, `#!${process.execPath}\nrequire(${JSON.stringify(this.entryModule)}).main(${behaviour}, process.argv.slice(2));\n`, { mode: 0o755 });
    return new FakeVmmBinary(executable, recordPath);
  }
}

export interface FakeVmmWorkspace {
  /** A temporary directory for this test file. */
  dir: string;
  kit: FakeVmmKit;
}

/** Registers jest hooks that give the calling test file a workspace, removed afterwards. */
export function fakeVmmWorkspace(prefix: string): FakeVmmWorkspace {
  const workspace = {} as FakeVmmWorkspace;
  beforeAll(() => {
    workspace.dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    workspace.kit = FakeVmmKit.compile(workspace.dir);
  });
  afterAll(() => fs.rmSync(workspace.dir, { recursive: true, force: true }));
  return workspace;
}
