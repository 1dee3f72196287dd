// `make demo`: start a private containerd, import a locally built busybox image and
// run a container through containerd in a QEMU VM with our shim; show that it ran in
// the guest kernel and that its exit code reached ctr.
import * as os from 'os';
import { startKataEnv, RUNTIME } from '../tests/e2e/kata-env';

function say(line: string): void {
  process.stdout.write(`demo: ${line}\n`);
}

async function main(): Promise<void> {
  say('starting a private containerd and importing the busybox test image ...');
  const env = await startKataEnv();
  try {
    const command = 'echo "hello from $(hostname)"; echo "guest kernel: $(uname -r)"; exit 7';
    say(`ctr run --rm --runtime ${RUNTIME} ${env.image} demo sh -c '${command}'`);
    say('(booting a VM under QEMU; with TCG emulation this takes a few seconds)');
    const started = Date.now();
    const result = await env.containerd.ctr(['run', '--rm', '--runtime', RUNTIME, env.image, 'demo', 'sh', '-c', command], { timeoutMs: 300_000 });
    const quote = (text: string, mark: string): string => text.replace(/\n$/, '').replace(/^/gm, `  ${mark} `) + '\n';
    process.stdout.write(quote(result.stdout, '|'));
    if (result.stderr) process.stdout.write(quote(result.stderr, '!'));
    say(`host kernel:  ${os.release()}`);
    say(`ctr exit code: ${result.code} (the container exited with 7) after ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const guestKernel = /guest kernel: (\S+)/.exec(result.stdout)?.[1];
    if (result.code !== 7 || !guestKernel || guestKernel === os.release()) {
      say('FAILED: the container did not run in the guest as expected');
      process.exitCode = 1;
    } else {
      say('OK: the container ran inside the VM');
    }
  } finally {
    await env.stop();
  }
}

main().catch((err) => {
  process.stderr.write(`demo: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
