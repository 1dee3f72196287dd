// The long-lived shim daemon of one pod: serves the Task API on the socket `start`
// chose, owns the sandbox, and exits after Shutdown (or SIGTERM) once it cleaned up.
import * as fs from 'fs';
import * as path from 'path';
import { resolveConfig } from '../config/config-location';
import { createLogger, Logger } from '../lib/logger';
import { CriMetadata, criMetadataOf } from '../lib/shim-monitor';
import { lookupService, TASK_SERVICE } from '../lib/protos';
import { createHypervisor } from '../hypervisors/factory';
import { Pod } from '../sandbox/pod';
import { installSandboxObserver } from '../sandbox/sandbox-observer';
import { readBundleSpec } from '../sandbox/spec';
import { TtrpcServer } from '../ttrpc';
import { TtrpcEventPublisher } from './events';
import { ShimFlags } from './flags';
import { publishExit, TaskService } from './task-service';
import { removeSocket } from './socket';
import { ManagementServer } from './management-server';
import { ShimMetrics } from './shim-metrics';

const READY_FD = 3;

/** containerd reads the bundle's `log` FIFO; fall back to stderr when it is absent. */
function openLog(bundle: string, debug: boolean): Logger {
  let fd: number | undefined;
  try {
    fd = fs.openSync(path.join(bundle, 'log'), fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
  } catch {
    fd = undefined;
  }
  return createLogger(fd ?? process.stderr, debug ? 'debug' : process.env.KATATS_LOG_LEVEL ?? 'info');
}

/** How long a daemon waits for its first Create before it exits. */
const IDLE_EXIT_MS = Number(process.env.KATATS_IDLE_EXIT_MS ?? 60_000);

/** How long the exit path waits for the last events and connections. */
const EXIT_FLUSH_MS = 3000;

function settleWithin(promise: Promise<unknown>, ms: number): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([promise, new Promise((r) => (timer = setTimeout(r, ms)))]).finally(() => clearTimeout(timer));
}

function report(message: string): void {
  try {
    fs.writeSync(READY_FD, message);
    fs.closeSync(READY_FD);
  } catch {
    /* started by hand, without a readiness pipe */
  }
}

/**
 * The pod's names in Kubernetes, for the monitor's labels. The daemon runs in the bundle
 * of the container that started it: for a CRI pod, the sandbox (pause) container, whose
 * spec carries them.
 */
function criMetadataIn(bundle: string, logger: Logger): CriMetadata {
  try {
    return criMetadataOf(readBundleSpec(bundle).annotations);
  } catch (err) {
    logger.warn({ bundle, err: (err as Error).message }, "cannot read the sandbox's annotations; its metrics carry no CRI names");
    return criMetadataOf(undefined);
  }
}

/**
 * The sandbox's metrics and its management socket (Kata's shim-monitor.sock), opened
 * once its work dir exists and closed before the work dir goes.
 */
function serveManagement(flags: ShimFlags, bundle: string, logger: Logger): { metrics: ShimMetrics; management: ManagementServer } {
  const metrics = new ShimMetrics({ logger: logger.child({ component: 'metrics' }), runtimeMetrics: true });
  const management = new ManagementServer({ metrics, namespace: flags.namespace, cri: criMetadataIn(bundle, logger), logger: logger.child({ component: 'management' }) });
  installSandboxObserver({
    sandboxStarted: (sandbox) => management.start(sandbox),
    sandboxStopping: () => management.stop(),
    agentCall: metrics.agentCall,
    hotplug: (device, op, failed) => metrics.hotplug(device, op, failed),
  });
  return { metrics, management };
}

export async function runDaemon(flags: ShimFlags): Promise<void> {
  const bundle = process.cwd();
  const logger = openLog(bundle, flags.debug).child({ shim: flags.id, namespace: flags.namespace });
  let server: TtrpcServer | undefined;
  try {
    const ttrpcAddress = process.env.TTRPC_ADDRESS ?? `${flags.address}.ttrpc`;
    const { metrics, management } = serveManagement(flags, bundle, logger);
    const events = new TtrpcEventPublisher(ttrpcAddress, flags.namespace, logger.child({ component: 'events' }), undefined, metrics);
    let shuttingDown: Promise<void> | undefined;
    const shutdown = (reason: string): Promise<void> =>
      (shuttingDown ??= (async () => {
        logger.info({ reason }, 'shim shutting down');
        removeSocket(flags.socket);
        await pod.destroy().catch((err) => logger.error({ err }, 'sandbox cleanup failed'));
        await management.stop();
        // Bounded: a containerd that stopped answering must not keep the daemon alive.
        await settleWithin(Promise.all([events.close().catch(() => undefined), server?.close().catch(() => undefined)]), EXIT_FLUSH_MS);
        process.exit(0);
      })());
    // The configuration is read at the first Create: only then are the runtime options and the sandbox's spec known.
    const pod = new Pod({ namespace: flags.namespace, resolveConfig: (hints) => resolveConfig(hints), newHypervisor: (config, l) => createHypervisor({ ...config.hypervisor, ksm: config.runtime.ksm }, l) }, {
      onExit: (c, p, exit) => publishExit(events, c, p, exit),
      onOom: (id) => events.publish('/tasks/oom', { container_id: id }),
    }, logger);
    const service = new TaskService({
      pod,
      events,
      logger,
      shutdown: async () => {
        // From now on a `start` for this id (a quick re-run) must launch a new daemon, not reach this one.
        removeSocket(flags.socket);
        await pod.destroy().catch((err) => logger.error({ err }, 'sandbox cleanup failed'));
        // Let the Shutdown response go out before the connection closes.
        setTimeout(() => void shutdown('Shutdown request'), 50);
      },
    });

    server = new TtrpcServer({ logger: logger.child({ component: 'ttrpc' }) });
    server.addService(lookupService(TASK_SERVICE), service.handlers());
    await server.listen(flags.socket, { mode: 0o600 });
    for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => void shutdown(signal));
    logger.info({ socket: flags.socket, pid: process.pid }, 'shim daemon ready');
    report('ready\n');
    // containerd follows a successful start with Create; a daemon that never gets one
    // (start's caller gave up, containerd crashed) must not live on forever.
    setTimeout(() => {
      if (pod.neverUsed) void shutdown(`no Create within ${IDLE_EXIT_MS / 1000} s of start`);
    }, IDLE_EXIT_MS).unref();
  } catch (err) {
    logger.error({ err }, 'shim daemon failed to start');
    report(`error: ${(err as Error).message}\n`);
    await server?.close().catch(() => undefined);
    process.exit(1);
  }
}
