import { silentLogger } from '../lib/logger';
import { EVENTS_SERVICE, lookupService } from '../lib/protos';
import { TtrpcServer } from '../ttrpc';
import { removeTmpDirs, tmpSocketPath } from '../ttrpc/test-helpers';
import { TtrpcEventPublisher } from './events';

/** containerd's event service: records the topics it is sent. */
async function fakeContainerd(socket: string): Promise<{ topics: string[]; server: TtrpcServer }> {
  const topics: string[] = [];
  const server = new TtrpcServer();
  server.addService(lookupService(EVENTS_SERVICE), {
    Forward: async (req: { envelope?: { topic?: string } }) => {
      topics.push(req.envelope?.topic ?? '');
      return {};
    },
  });
  await server.listen(socket);
  return { topics, server };
}

const exit = (id: string) => ['/tasks/exit', 'containerd.events.TaskExit', { container_id: id, id, exit_status: 0 }] as const;
const oom = (id: string) => ['/tasks/oom', 'containerd.events.TaskOOM', { container_id: id }] as const;

describe('the event publisher', () => {
  afterAll(() => removeTmpDirs());

  it('keeps retrying while containerd is away (a restart), and delivers in order once it is back', async () => {
    const socket = tmpSocketPath('events.sock');
    const publisher = new TtrpcEventPublisher(`unix://${socket}`, 'ns', silentLogger(), { queue: 100, retryWindowMs: 60_000 });
    publisher.publish(...exit('c1'));
    publisher.publish(...oom('c2'));
    // Longer than the old 5-attempt budget (~1.5 s) before containerd answers again.
    await new Promise((r) => setTimeout(r, 2500));
    const containerd = await fakeContainerd(socket);
    await publisher.flush();
    expect(containerd.topics).toEqual(['/tasks/exit', '/tasks/oom']);
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
