// The long-lived shim daemon of one pod: serves the Task API on the socket `start`
// chose, owns the sandbox, and exits after Shutdown (or SIGTERM) once it cleaned up.
import * as fs from 'fs';
import * as path from 'path';
import { ConfigHints, LoadedConfig, resolveConfig } from '../config/config-location';
import { createLogger, HeldLog, Logger, LogSink, logSink } from '../lib/logger';
import type { WarmVm } from '../sandbox/warm-vm';
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
import { topUpSpares } from './spare-launch';

const READY_FD = 3;

/** containerd reads the bundle's `log` FIFO; fall back to stderr when it is absent. */
function openLog(bundle: string): LogSink {
  let fd: number | undefined;
  try {
    fd = fs.openSync(path.join(bundle, 'log'), fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
  } catch {
    fd = undefined;
  }
  return logSink(fd ?? process.stderr);
}

/** The daemon's log level: debug with containerd's -debug. */
export function daemonLogLevel(debug: boolean): string {
  return debug ? 'debug' : process.env.KATATS_LOG_LEVEL ?? 'info';
}

/** How long a daemon waits for its first Create before it exits (read when it starts serving: a spare's environment is its claimer's). */
const idleExitMs = (): number => Number(process.env.KATATS_IDLE_EXIT_MS ?? 60_000);

/** How long the exit path waits for the last events and connections. */
const EXIT_FLUSH_MS = 3000;

function settleWithin(promise: Promise<unknown>, ms: number): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([promise, new Promise((r) => (timer = setTimeout(r, ms)))]).finally(() => clearTimeout(timer));
}

/**
 * Tells whoever waits for the daemon that it listens ("ready") or failed ("error: …").
 * False when that can no longer reach them: the daemon then exits at once, leaving the
 * pod's socket to the daemon they launched instead.
 */
export type ReadyReport = (message: string) => boolean;

/** `start` launched this daemon with a pipe on fd 3. */
const reportOnReadyFd: ReadyReport = (message) => {
  try {
    fs.writeSync(READY_FD, message);
    fs.closeSync(READY_FD);
  } catch {
    /* started by hand, without a readiness pipe */
  }
  return true;
};

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

/** What a claimed spare brings (spare.ts). */
export interface FromSpare {
  /** The VM it restored while it waited, if any. */
  warm?: WarmVm;
  /** The log its lines went to until now: from now on they go to the pod's. */
  heldLog?: HeldLog;
  /** How it exits: its VM ended first, unless a pod took it. */
  exit?: (code: number) => void;
}

export async function runDaemon(flags: ShimFlags, report: ReadyReport = reportOnReadyFd, spare: FromSpare = {}): Promise<void> {
  const exit = spare.exit ?? ((code: number) => process.exit(code));
  const bundle = process.cwd();
  const sink = openLog(bundle);
  spare.heldLog?.sendTo(sink);
  let warm = spare.warm;
  const logger = createLogger(sink, daemonLogLevel(flags.debug)).child({ shim: flags.id, namespace: flags.namespace });
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
        // A spare's VM no Create took (the daemon got none, or shuts down before).
        await warm?.discard().catch((err) => logger.error({ err }, "ending the spare's VM failed"));
        await management.stop();
        // Bounded: a containerd that stopped answering must not keep the daemon alive.
        await settleWithin(Promise.all([events.close().catch(() => undefined), server?.close().catch(() => undefined)]), EXIT_FLUSH_MS);
        process.exit(0);
      })());
    // The configuration is read at the first Create: only then are the runtime options and the sandbox's spec known.
    const resolveAndTopUp = (hints: ConfigHints): LoadedConfig => {
      const loaded = resolveConfig(hints);
      // Before the sandbox starts: the daemon may then join the pod's cgroup, and the spares must not.
      const { factory } = loaded.config;
      topUpSpares(flags, bundle, factory.spareShims, logger, factory.spareVms ? loaded.files[0] : undefined);
      return loaded;
    };
    const takeWarmVm = (): WarmVm | undefined => {
      const taken = warm;
      warm = undefined;
      return taken;
    };
    const pod = new Pod({ namespace: flags.namespace, resolveConfig: resolveAndTopUp, newHypervisor: (config, l) => createHypervisor({ ...config.hypervisor, ksm: config.runtime.ksm }, l), takeWarmVm }, {
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
    if (!report('ready\n')) {
      // Not server.close(): that would unlink the socket path, which may be the other daemon's by now.
      logger.error('whoever started this daemon is gone; exiting');
      exit(1);
      return;
    }
    if (flags.sparesDir) logger.info({ pid: process.pid }, 'serving the pod as a claimed spare');
    // containerd follows a successful start with Create; a daemon that never gets one
    // (start's caller gave up, containerd crashed) must not live on forever.
    const idleMs = idleExitMs();
    setTimeout(() => {
      if (pod.neverUsed) void shutdown(`no Create within ${idleMs / 1000} s of start`);
    }, idleMs).unref();
  } catch (err) {
    logger.error({ err }, 'shim daemon failed to start');
    report(`error: ${(err as Error).message}\n`);
    await server?.close().catch(() => undefined);
    exit(1);
  }
}
