import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as protobuf from 'protobufjs';
import { AGENT_SERVICE, lookupService, lookupType } from '../lib/protos';
import { POD_START_PATTERNS, prepareForClones } from './template-prep';

describe('prepareForClones', () => {
  afterEach(() => jest.restoreAllMocks());

  it("generates the agent service's codecs and watches a directory for a moment", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kt-template-prep-'));
    try {
      const prepared = prepareForClones(lookupService(AGENT_SERVICE), dir);
      expect(prepared.messageTypes).toBeGreaterThan(20);
      expect(prepared.watchLoaded).toBe(true);
      expect(prepared.patterns).toBe(POD_START_PATTERNS.length);

      const codegen = jest.spyOn(protobuf.util, 'codegen');
      const request = lookupType('katats.agent.v1.CreateContainerRequest');
      request.toObject(request.decode(request.encode(request.fromObject({ container_id: 'c1' })).finish()));
      expect(codegen).not.toHaveBeenCalled();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('says so when it cannot watch the directory, and prepares the codecs all the same', () => {
    const prepared = prepareForClones(lookupService(AGENT_SERVICE), '/nonexistent/kt-template-prep');
    expect(prepared).toMatchObject({ watchLoaded: false });
    expect(prepared.messageTypes).toBeGreaterThan(20);
  });

  it('compiles only patterns that are neither global nor sticky (a test would move their lastIndex)', () => {
    expect(POD_START_PATTERNS.length).toBeGreaterThan(0);
    for (const pattern of POD_START_PATTERNS) expect({ pattern: String(pattern), global: pattern.global, sticky: pattern.sticky }).toEqual({ pattern: String(pattern), global: false, sticky: false });
  });
});
