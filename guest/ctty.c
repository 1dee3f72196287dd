/*
 * katats-ctty PROGRAM [ARGS...]
 *
 * Makes the terminal on stdin the controlling terminal of the calling process, then
 * execs PROGRAM. The agent starts container processes that asked for a terminal
 * through this helper (bind-mounted read-only into the container): it cannot use the
 * OCI runtime's console socket, because receiving the terminal's fd needs SCM_RIGHTS,
 * which Node does not offer. So the agent owns the terminal, hands the runtime its
 * slave end as plain stdio, and this helper claims it from inside the container, so
 * job control and Ctrl-C work as they do with runc.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(int argc, char **argv) {
	if (argc < 2) {
		fprintf(stderr, "usage: %s PROGRAM [ARGS...]\n", argv[0]);
		return 127;
	}
	if (isatty(STDIN_FILENO)) {
		/* Fails harmlessly when the runtime already made us a session leader. */
		(void)setsid();
		/* Without it the program still runs, only without job control. */
		(void)ioctl(STDIN_FILENO, TIOCSCTTY, 0);
	}
	execvp(argv[1], argv + 1);
	fprintf(stderr, "katats-ctty: cannot run %s: %s\n", argv[1], strerror(errno));
	return errno == ENOENT ? 127 : 126;
}
