import { silentLogger } from '../lib/logger';
import type { AgentClient } from './agent-client';
import { TaskProcess } from './task-process';

/** An agent that records the order of the calls a Start makes, and holds reads open until told. */
function orderedAgent(order: string[]): { agent: AgentClient; exit: () => void } {
  let exited: () => void = () => undefined;
  const gone = new Promise<void>((resolve) => (exited = resolve));
  const read = (stream: string) => async () => {
    order.push(stream);
    await gone;
    return { data: Buffer.alloc(0), eof: true };
  };
  const agent = {
    readStdout: read('ReadStdout'),
    readStderr: read('ReadStderr'),
    waitProcess: async () => (await gone, 0),
  } as unknown as AgentClient;
  return { agent, exit: exited };
}

describe('TaskProcess.start', () => {
  it('asks the agent to launch the process before it asks for its output (a pause container has no FIFOs to open first)', async () => {
    const order: string[] = [];
    const { agent, exit } = orderedAgent(order);
    const proc = new TaskProcess('c1', '', { stdin: '', stdout: '', stderr: '' }, false, agent, silentLogger());
    const exits: number[] = [];
    const pid = await proc.start(async () => (order.push('StartContainer'), 42), (e) => exits.push(e.status));
    expect(pid).toBe(42);
    exit();
    await proc.wait();
    expect(order).toEqual(['StartContainer', 'ReadStdout', 'ReadStderr']);
    expect(exits).toEqual([0]);
  });
});
