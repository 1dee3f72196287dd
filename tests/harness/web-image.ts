// A web-server image that logs the way the official nginx and httpd images do (issue
// 16 A): its log files are symlinks to /dev/stdout, /dev/stderr and /proc/self/fd/2,
// which the server open()s. That works on a pipe and fails with ENXIO on a socket, so
// such images only start where container stdio are pipes, as runc gives them.
//
// The busybox test image's rootfs (image.ts) plus: /usr/local/bin/web (the entrypoint
// below), /www/index.html, /var/log/web/{access,error}.log symlinks, and applets for
// privileged-pod checks (brctl, tunctl, zcat). Built and cached like the others.
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { CRI_NAMESPACE } from './containerd-cri';
import type { PrivateContainerd } from './containerd';
import { buildOciImage, BuiltImage, DEFAULT_IMAGE_CACHE_DIR, HOST_BUSYBOX, makeBusyboxRootfs } from './image';

export const WEB_IMAGE_NAME = 'localhost/kata-ts/web:latest';
/** What GET /index.html answers. */
export const WEB_INDEX = 'served by the web image\n';
/** The first line the entrypoint writes through each log path. */
export const WEB_LOG_LINES = {
  /** through /var/log/web/access.log -> /dev/stdout */
  stdout: 'web: access log open',
  /** through /var/log/web/error.log -> /dev/stderr */
  stderr: 'web: error log open',
  /** through /proc/self/fd/2, as httpd's `ErrorLog /proc/self/fd/2` */
  procFd2: 'web: /proc/self/fd/2 open',
};

const EXTRA_APPLETS = ['brctl', 'tunctl', 'zcat', 'nsenter', 'pidof', 'killall'];

/**
 * The entrypoint. A background worker stands for nginx's worker processes: in a
 * container without its own PID namespace only the runtime's kill of the whole
 * container ends it (runc's shim kills them when the init exits). httpd's request log
 * (-vv, on its stderr) goes through the access log symlink, so requests show on stdout.
 */
const ENTRYPOINT = `#!/bin/sh
port=\${WEB_PORT:-80}
sh -c 'while :; do sleep 3600; done' &
echo "${WEB_LOG_LINES.stdout} (port $port, worker $!)" >> /var/log/web/access.log || exit 11
echo "${WEB_LOG_LINES.stderr}" >> /var/log/web/error.log || exit 12
echo "${WEB_LOG_LINES.procFd2}" >> /proc/self/fd/2 || exit 13
exec httpd -f -vv -p "$port" -h /www 2>> /var/log/web/access.log
`;

export async function buildWebImage(outDir: string = DEFAULT_IMAGE_CACHE_DIR): Promise<BuiltImage> {
  const busybox = await fs.promises.readFile(HOST_BUSYBOX);
  return buildOciImage(outDir, {
    cacheName: 'web',
    ref: WEB_IMAGE_NAME,
    inputs: {
      busybox: createHash('sha256').update(busybox).digest('hex'),
      extra: EXTRA_APPLETS.join(','),
      entrypoint: createHash('sha256').update(ENTRYPOINT + WEB_INDEX).digest('hex'),
      layout: 'web-1',
    },
    config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Entrypoint: ['/usr/local/bin/web'], WorkingDir: '/' },
    createdBy: 'kata-ts tests/harness/web-image.ts (busybox httpd, nginx-style logs)',
    populate: async (rootfs) => {
      await makeBusyboxRootfs(rootfs, busybox, EXTRA_APPLETS);
      for (const [d, mode] of [['usr', 0o755], ['usr/local', 0o755], ['usr/local/bin', 0o755], ['www', 0o755], ['var', 0o755], ['var/log', 0o755], ['var/log/web', 0o755]] as const) {
        await fs.promises.mkdir(path.join(rootfs, d), { recursive: true });
        await fs.promises.chmod(path.join(rootfs, d), mode);
      }
      const entry = path.join(rootfs, 'usr/local/bin/web');
      await fs.promises.writeFile(entry, ENTRYPOINT);
      await fs.promises.chmod(entry, 0o755);
      await fs.promises.writeFile(path.join(rootfs, 'www/index.html'), WEB_INDEX);
      await fs.promises.chmod(path.join(rootfs, 'www/index.html'), 0o644);
      // nginx's Dockerfile: ln -sf /dev/stdout access.log && ln -sf /dev/stderr error.log
      await fs.promises.symlink('/dev/stdout', path.join(rootfs, 'var/log/web/access.log'));
      await fs.promises.symlink('/dev/stderr', path.join(rootfs, 'var/log/web/error.log'));
    },
  });
}

/** Builds (or reuses) the web image and imports it where CRI looks (k8s.io); returns its name. */
export async function importWebImage(cd: PrivateContainerd, outDir: string = DEFAULT_IMAGE_CACHE_DIR): Promise<string> {
  const image = await buildWebImage(outDir);
  const [ref] = await cd.importImage(image.archive, { namespace: CRI_NAMESPACE });
  return ref;
}
