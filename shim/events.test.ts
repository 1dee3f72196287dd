import { silentLogger } from '../lib/logger';
import { decodeAs, EVENTS_SERVICE, lookupService } from '../lib/protos';
import type { containerd as types } from '../lib/proto-types';
import { TtrpcServer } from '../ttrpc';
import { removeTmpDirs, tmpSocketPath } from '../ttrpc/test-helpers';
import { TtrpcEventPublisher } from './events';

type ForwardRequest = types.services.events.ttrpc.v1.IForwardRequest;

/** containerd's event service: records the topics it is sent, and the exits' contents decoded by their type URL. */
async function fakeContainerd(socket: string): Promise<{ topics: string[]; exits: { type_url: string; container_id: string; exit_status: number }[]; server: TtrpcServer }> {
  const topics: string[] = [];
  const exits: { type_url: string; container_id: string; exit_status: number }[] = [];
  const server = new TtrpcServer();
  server.addService(lookupService(EVENTS_SERVICE), {
    Forward: async (req: ForwardRequest) => {
      topics.push(req.envelope?.topic ?? '');
      const event = req.envelope?.event;
      if (req.envelope?.topic === '/tasks/exit' && event?.type_url && event.value) {
        const exit = decodeAs<types.events.ITaskExit>(event.type_url, event.value);
        exits.push({ type_url: event.type_url, container_id: exit.container_id, exit_status: exit.exit_status });
      }
      return {};
    },
  });
  await server.listen(socket);
  return { topics, exits, server };
}

const exit = (id: string, status = 0) => ['/tasks/exit', { container_id: id, id, exit_status: status }] as const;
const oom = (id: string) => ['/tasks/oom', { container_id: id }] as const;

describe('the event publisher', () => {
  afterAll(() => removeTmpDirs());

  it('keeps retrying while containerd is away (a restart), and delivers in order once it is back', async () => {
    const socket = tmpSocketPath('events.sock');
    const publisher = new TtrpcEventPublisher(`unix://${socket}`, 'ns', silentLogger(), { queue: 100, retryWindowMs: 60_000 });
    publisher.publish(...exit('c1', 3));
    publisher.publish(...oom('c2'));
    // Longer than the old 5-attempt budget (~1.5 s) before containerd answers again.
    await new Promise((r) => setTimeout(r, 2500));
    const containerd = await fakeContainerd(socket);
    await publisher.flush();
    expect(containerd.topics).toEqual(['/tasks/exit', '/tasks/oom']);
    // Each event is packed as its topic's message, under the type URL containerd decodes it by.
    expect(containerd.exits).toEqual([{ type_url: 'containerd.events.TaskExit', container_id: 'c1', exit_status: 3 }]);
    await publisher.close();
    await containerd.server.close();
  });

  it('when full, drops the oldest events that are not exits; exits are never dropped', async () => {
    const socket = tmpSocketPath('events.sock');
    const counted = { published: [] as string[], dropped: [] as string[] };
    const observer = { published: (topic: string) => counted.published.push(topic), dropped: (topic: string, reason: string) => counted.dropped.push(`${reason} ${topic}`) };
    const publisher = new TtrpcEventPublisher(`unix://${socket}`, 'ns', silentLogger(), { queue: 4, retryWindowMs: 60_000 }, observer);
    publisher.publish(...oom('first')); // in flight, retried until containerd answers
    await new Promise((r) => setTimeout(r, 50));
    publisher.publish(...exit('a'));
    for (let i = 0; i < 50; i++) publisher.publish(...oom(`flood-${i}`));
    publisher.publish(...exit('b'));
    publisher.publish(...exit('c'));
    publisher.publish(...exit('d'));
    publisher.publish(...exit('e')); // the queue holds only exits now: it grows for them
    publisher.publish(...oom('late')); // and refuses what is not one
    const containerd = await fakeContainerd(socket);
    await publisher.flush();
    expect(containerd.topics).toEqual(['/tasks/oom', '/tasks/exit', '/tasks/exit', '/tasks/exit', '/tasks/exit', '/tasks/exit']);
    // The metrics count what containerd got and what it never will: 50 floods, then 'late'.
    expect(counted.published).toEqual(containerd.topics);
    expect(counted.dropped).toEqual(Array(51).fill('queue_full /tasks/oom'));
    await publisher.close();
    publisher.publish(...exit('after-close'));
    expect(counted.dropped.at(-1)).toBe('closed /tasks/exit');
    await containerd.server.close();
  });
});
