/*
 * katats-vsock-relay PORT=UNIX_PATH [PORT=UNIX_PATH ...]
 *
 * Listens on each AF_VSOCK PORT (any CID) and joins every connection the host makes
 * there to a new connection to UNIX_PATH, where the agent serves it. Node cannot use
 * an AF_VSOCK socket (net.Socket refuses the fd type, and there is no vsock address
 * family to dial or listen on), so the agent listens on Unix sockets and this relay
 * carries the bytes: one forked child per connection, which copies both ways until
 * each side has ended, passing a half-close on as one.
 *
 * The agent starts the relay once it listens, and ends when the relay does (nothing
 * else may own these ports). A child still retries its Unix connect for a while, in
 * case the agent's listener is briefly unable to accept.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#define MAX_PORTS 4
#define CONNECT_RETRY_MS 50
#define CONNECT_GIVE_UP_MS 60000
#define BUFFER_BYTES 65536

struct relay_port {
	unsigned int port;
	const char *unix_path;
	int listen_fd;
};

static void die(const char *what)
{
	fprintf(stderr, "katats-vsock-relay: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int listen_vsock(unsigned int port)
{
	struct sockaddr_vm addr = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port };
	int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket(AF_VSOCK)");
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		die("bind vsock port");
	if (listen(fd, 16) < 0)
		die("listen");
	return fd;
}

static int connect_unix(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct timespec pause = { .tv_sec = 0, .tv_nsec = CONNECT_RETRY_MS * 1000000L };
	if (strlen(path) >= sizeof(addr.sun_path))
		return -1;
	strcpy(addr.sun_path, path);
	for (int waited = 0; waited < CONNECT_GIVE_UP_MS; waited += CONNECT_RETRY_MS) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -1;
		if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0)
			return fd;
		int failure = errno;
		close(fd);
		if (failure != ENOENT && failure != ECONNREFUSED && failure != EAGAIN && failure != EINTR) {
			errno = failure;
			return -1;
		}
		nanosleep(&pause, NULL);
	}
	errno = ETIMEDOUT;
	return -1;
}

/* Writes all of buf; 0 on success. */
static int write_all(int fd, const char *buf, ssize_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= n;
	}
	return 0;
}

/* Copies between a and b until both directions have ended or one fails. */
static void splice_both_ways(int a, int b)
{
	static char buffer[BUFFER_BYTES];
	struct pollfd fds[2] = { { .fd = a, .events = POLLIN }, { .fd = b, .events = POLLIN } };
	int open_directions = 2;
	while (open_directions > 0) {
		if (poll(fds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		for (int i = 0; i < 2; i++) {
			if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			int to = i == 0 ? b : a;
			ssize_t n = read(fds[i].fd, buffer, sizeof(buffer));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				/* This direction ended: tell the other side, keep the reverse one. */
				shutdown(to, SHUT_WR);
				fds[i].fd = -1;
				open_directions--;
				if (n < 0)
					return;
				continue;
			}
			if (write_all(to, buffer, n) < 0)
				return;
		}
	}
}

static void serve(int vsock_fd, const char *unix_path)
{
	int agent_fd = connect_unix(unix_path);
	if (agent_fd < 0) {
		fprintf(stderr, "katats-vsock-relay: cannot reach %s: %s\n", unix_path, strerror(errno));
		_exit(1);
	}
	splice_both_ways(vsock_fd, agent_fd);
	_exit(0);
}

int main(int argc, char **argv)
{
	struct relay_port ports[MAX_PORTS];
	int count = argc - 1;
	if (count < 1 || count > MAX_PORTS) {
		fprintf(stderr, "usage: katats-vsock-relay PORT=UNIX_PATH [PORT=UNIX_PATH ...] (at most %d)\n", MAX_PORTS);
		return 2;
	}
	for (int i = 0; i < count; i++) {
		char *end;
		char *equals = strchr(argv[i + 1], '=');
		unsigned long port = strtoul(argv[i + 1], &end, 10);
		if (!equals || end != equals || port == 0 || port > 0xffffffffUL || equals[1] != '/') {
			fprintf(stderr, "katats-vsock-relay: '%s' is not PORT=/UNIX_PATH\n", argv[i + 1]);
			return 2;
		}
		ports[i] = (struct relay_port){ .port = (unsigned int)port, .unix_path = equals + 1, .listen_fd = listen_vsock((unsigned int)port) };
	}
	/* Children are never waited for: the kernel reaps them. */
	struct sigaction ignore = { .sa_handler = SIG_IGN, .sa_flags = SA_NOCLDWAIT };
	sigaction(SIGCHLD, &ignore, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct pollfd fds[MAX_PORTS];
	for (int i = 0; i < count; i++)
		fds[i] = (struct pollfd){ .fd = ports[i].listen_fd, .events = POLLIN };
	for (;;) {
		if (poll(fds, count, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll");
		}
		for (int i = 0; i < count; i++) {
			if (!(fds[i].revents & POLLIN))
				continue;
			int conn = accept4(ports[i].listen_fd, NULL, NULL, SOCK_CLOEXEC);
			if (conn < 0) {
				/* Out of fds or memory: the connection stays queued; do not spin on it. */
				if (errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS)
					nanosleep(&(struct timespec){ .tv_nsec = 100 * 1000000L }, NULL);
				continue;
			}
			pid_t pid = fork();
			if (pid == 0) {
				for (int j = 0; j < count; j++)
					close(ports[j].listen_fd);
				serve(conn, ports[i].unix_path);
			}
			if (pid < 0)
				fprintf(stderr, "katats-vsock-relay: fork: %s\n", strerror(errno));
			close(conn);
		}
	}
}
