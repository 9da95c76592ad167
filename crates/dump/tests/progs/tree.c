/* A process tree for crates/dump/tests (tree.rs): builds a known tree, prints
 * "ready R A B G Z" (the pids as the root sees them) and every live member counts.
 *
 * usage: dump-test-tree DIR MODE
 *   MODE family   - the tree below
 *        socket   - the same, and G also holds a socket at fd 9 (the dump refuses it)
 *        rootsocket - the same, but R holds the socket at fd 9, made once every child runs
 *        sysv     - the same, and R first creates a System V shared memory segment (run it in
 *                   an IPC namespace of its own: the segment dies with the namespace)
 *        outgroup - the root forks C first, then moves to a process group of its own: C stays
 *                   in the caller's group, led from outside the tree (the dump refuses it)
 *        threads  - the family, and R and A each run two more threads (sleeping in a loop),
 *                   started before "ready"
 *
 * The tree (MODE family):
 *   R  the root: DIR/shared opened O_RDWR at offset 3 (fd 3, inherited by every child: one open
 *      file description); the read end of a pipe (fd 4) whose write end A holds (fd 5), with
 *      "from-A" in flight; counts into DIR/count-R.
 *   A  child of R, leader of its own process group; counts into DIR/count-A.
 *   G  child of A, in A's group; counts into DIR/count-G.
 *   B  child of R, in R's group; opens the FIFO DIR/fifo again O_RDWR (fd 7: its own open file
 *      description of the FIFO R holds at fd 6, holding "fifo-data"); counts into DIR/count-B.
 *   Z  child of R that exits with status 7 at once and is never reaped: a zombie.
 * Each member appends a line to its count file every 2 ms.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) { perror(what); _exit(2); }

static const char *dir;

static void count(const char *name)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/count-%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
	/* At fd 30, out of the way of the fds the tree is about. */
	if (fd < 0 || dup2(fd, 30) < 0) die("open count");
	close(fd);
	fd = 30;
	struct timespec ts = { 0, 2 * 1000 * 1000 };
	for (unsigned long n = 0;; n++) {
		char line[32];
		int len = snprintf(line, sizeof line, "%lu\n", n);
		if (write(fd, line, len) != len) die("write count");
		nanosleep(&ts, NULL);
	}
}

/* Forks a child that reports ready on `ready` (one byte) then runs `body`. */
static pid_t child(int ready, void (*body)(int ready))
{
	pid_t pid = fork();
	if (pid < 0) die("fork");
	if (pid == 0) {
		body(ready);
		_exit(0);
	}
	return pid;
}

static int with_socket;
static int with_threads;
static pid_t g_pid;

static void *sleeper(void *arg)
{
	(void)arg;
	struct timespec ts = { 0, 2 * 1000 * 1000 };
	for (;;)
		nanosleep(&ts, NULL);
	return NULL;
}

/* With MODE threads: two more threads in the calling process. */
static void more_threads(void)
{
	if (!with_threads)
		return;
	for (int i = 0; i < 2; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, sleeper, NULL) != 0) die("pthread_create");
	}
}

static void run_g(int ready)
{
	if (with_socket) {
		int s = socket(AF_UNIX, SOCK_DGRAM, 0);
		if (s < 0 || dup2(s, 9) < 0) die("socket");
		close(s);
	}
	if (write(ready, "g", 1) != 1) die("ready");
	count("G");
}

static void run_a(int ready)
{
	if (setpgid(0, 0) < 0) die("setpgid A");
	close(4);
	if (write(5, "from-A", 6) != 6) die("write pipe");
	g_pid = child(ready, run_g);
	more_threads();
	/* Tell the root G's pid through the ready pipe. */
	char msg[16];
	int len = snprintf(msg, sizeof msg, "a%d;", (int)g_pid);
	if (write(ready, msg, len) != len) die("ready");
	count("A");
}

static void run_b(int ready)
{
	close(4);
	close(5);
	close(6);
	char path[4096];
	snprintf(path, sizeof path, "%s/fifo", dir);
	int f = open(path, O_RDWR);
	if (f < 0 || dup2(f, 7) < 0) die("open fifo B");
	if (f != 7) close(f);
	if (write(ready, "b", 1) != 1) die("ready");
	count("B");
}

static void run_z(int ready)
{
	(void)ready;
	_exit(7);
}

static void run_c(int ready)
{
	if (write(ready, "c", 1) != 1) die("ready");
	count("C");
}

int main(int argc, char **argv)
{
	if (argc < 3) { fprintf(stderr, "usage: dump-test-tree DIR MODE\n"); return 2; }
	dir = argv[1];
	const char *mode = argv[2];
	with_socket = !strcmp(mode, "socket");
	with_threads = !strcmp(mode, "threads");
	if (!strcmp(mode, "sysv") && shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600) < 0)
		die("shmget");
	/* The ready pipe lives at fds 20 and 21, out of the way of the fds the tree is about. */
	int rp[2];
	if (pipe(rp) < 0 || dup2(rp[0], 20) < 0 || dup2(rp[1], 21) < 0) die("pipe");
	close(rp[0]);
	close(rp[1]);
	rp[0] = 20;
	rp[1] = 21;
	char buf[64] = { 0 };

	if (!strcmp(mode, "outgroup")) {
		pid_t c = child(rp[1], run_c);
		if (read(rp[0], buf, 1) != 1) die("wait ready");
		if (setpgid(0, 0) < 0) die("setpgid R");
		printf("ready %d %d\n", (int)getpid(), (int)c);
		fflush(stdout);
		count("R");
	}

	char path[4096];
	snprintf(path, sizeof path, "%s/shared", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || dup2(fd, 3) < 0) die("open shared");
	if (fd != 3) close(fd);
	if (write(3, "abcdef", 6) != 6) die("write shared");
	lseek(3, 3, SEEK_SET);
	int p[2];
	if (pipe(p) < 0 || dup2(p[0], 4) < 0 || dup2(p[1], 5) < 0) die("pipe");
	if (p[0] != 4 && p[0] != 5) close(p[0]);
	if (p[1] != 4 && p[1] != 5) close(p[1]);

	snprintf(path, sizeof path, "%s/fifo", dir);
	if (mkfifo(path, 0600) < 0) die("mkfifo");
	int f = open(path, O_RDWR);
	if (f < 0 || dup2(f, 6) < 0) die("open fifo");
	if (f != 6) close(f);
	if (write(6, "fifo-data", 9) != 9) die("write fifo");

	pid_t a = child(rp[1], run_a);
	close(5);
	pid_t b = child(rp[1], run_b);
	pid_t z = child(rp[1], run_z);
	/* Wait for "g", "a<G>;" and "b" (in any order), and for Z to become a zombie. */
	int g = 0, got_a = 0, got_b = 0, got_g = 0;
	size_t used = 0;
	while (!(got_a && got_b && got_g)) {
		ssize_t n = read(rp[0], buf + used, sizeof buf - 1 - used);
		if (n <= 0) die("wait ready");
		used += n;
		buf[used] = 0;
		got_b = strchr(buf, 'b') != NULL;
		got_g = strchr(buf, 'g') != NULL;
		char *at = strchr(buf, 'a');
		if (at && strchr(at, ';')) {
			g = atoi(at + 1);
			got_a = 1;
		}
	}
	siginfo_t si;
	memset(&si, 0, sizeof si);
	if (waitid(P_PID, z, &si, WEXITED | WNOWAIT) < 0) die("waitid Z");
	close(rp[0]);
	close(rp[1]);
	more_threads();
	if (!strcmp(mode, "rootsocket")) {
		int s = socket(AF_UNIX, SOCK_DGRAM, 0);
		if (s < 0 || dup2(s, 9) < 0) die("socket");
		close(s);
	}
	printf("ready %d %d %d %d %d\n", (int)getpid(), (int)a, (int)b, g, (int)z);
	fflush(stdout);
	count("R");
}
