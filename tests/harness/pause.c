/*
 * The pod sandbox's placeholder process for kata-ts tests (the role Kubernetes' pause
 * image plays): it keeps the pod's namespaces alive while doing nothing, reaps
 * orphans when it is PID 1 of a shared PID namespace, and exits 0 on SIGINT/SIGTERM
 * so that StopPodSandbox sees a clean exit. Built with `gcc -static -O2` by
 * tests/harness/pause-image.ts; no libc is needed in the image.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig) {
	(void)sig;
	_exit(0);
}

static void on_child(int sig) {
	int saved = errno; /* a handler must not clobber errno for the interrupted code */
	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0) {
	}
	errno = saved;
}

int main(int argc, char **argv) {
	struct sigaction sa;

	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		puts("kata-ts pause");
		return 0;
	}
	/* As PID 1 the kernel drops signals without a handler, so handlers are required. */
	memset(&sa, 0, sizeof sa);
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_stop;
	if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0) return 1;
	sa.sa_handler = on_child;
	sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
	if (sigaction(SIGCHLD, &sa, NULL) < 0) return 1;
	for (;;) pause();
}
