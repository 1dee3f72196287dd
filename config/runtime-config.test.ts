import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { InvalidArgumentError } from '../lib/errors';
import { defaultConfig, loadConfig, parseConfig } from './runtime-config';

describe('runtime configuration', () => {
  it('overlays given keys on the defaults', () => {
    const config = parseConfig({ hypervisor: { accelerator: 'tcg', memoryMiB: 512 } }, 'test.json');
    expect(config.hypervisor.accelerator).toBe('tcg');
    expect(config.hypervisor.memoryMiB).toBe(512);
    expect(config.hypervisor.vcpus).toBe(defaultConfig().hypervisor.vcpus);
  });

  it('leaves the debug console off unless asked for', () => {
    expect(defaultConfig().agent.debugConsole).toBe(false);
    expect(parseConfig({ agent: { debugConsole: true } }, 'test.json').agent.debugConsole).toBe(true);
  });

  it.each([
    [{ hypervisor: { accelerator: 'hvf' } }, 'hypervisor.accelerator: must be "kvm" or "tcg"'],
    [{ hypervisor: { memoryMiB: '1G' } }, 'hypervisor.memoryMiB: must be a number'],
    [{ hypervisor: { memoryMiB: 64 } }, 'hypervisor.memoryMiB: must be an integer of at least 128'],
    [{ hypervisor: { kernelParams: [1] } }, 'hypervisor.kernelParams: must be a list of strings'],
    [{ hypervisor: { colour: 'red' } }, 'hypervisor.colour: unknown key'],
    [{ network: {} }, 'network: unknown section'],
    [{ agent: { bootTimeoutMs: -1 } }, 'agent.bootTimeoutMs: must be a positive number'],
    [{ agent: { debugConsole: 'true' } }, 'agent.debugConsole: must be a boolean, got "true"'],
    [[], '(top level): must be a JSON object'],
  ])('rejects %j naming the key and reason', (raw, message) => {
    expect(() => parseConfig(raw, '/etc/x.json')).toThrow(InvalidArgumentError);
    expect(() => parseConfig(raw, '/etc/x.json')).toThrow(`/etc/x.json: ${message}`);
  });

  it('names the file when it is not JSON', () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'cfg-')), 'config.json');
    fs.writeFileSync(file, '{ nope');
    expect(() => loadConfig(file)).toThrow(new RegExp(`^${file}: not valid JSON`));
  });

  it('fails clearly for an explicitly named file that is missing', () => {
    expect(() => loadConfig('/nonexistent/kata.json')).toThrow('cannot read configuration /nonexistent/kata.json');
  });
});
