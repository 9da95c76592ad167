/* A dump target for crates/dump/tests: builds a known state, prints "ready <pid>" and counts.
 *
 * usage: [TARGET_FD9_TO_20=1] target DIR MODE
 *   DIR  a directory for its files
 *   MODE plain   - the state below only
 *        socket  - also holds a socket (fd refused by the dump)
 *        eventfd - also holds an eventfd
 *        posixtimer - also has a POSIX timer (timer_create, armed for an hour)
 *        thread  - also runs a second thread
 *        churn   - also runs a thread that creates and joins short-lived threads without end
 *        (modes combine: "thread+socket")
 *        big     - also dirties MiB of anonymous memory given by $TARGET_MIB
 *        busy    - counts in a busy loop (no syscall but a write every 2^22 turns)
 *
 * State: DIR/count opened O_WRONLY|O_APPEND|O_CLOEXEC (fd 3), a line appended every 2 ms;
 * a pipe (fds 4, 5) holding "pipe-data"; a dup of the count fd (fd 6); an unlinked file
 * DIR/gone holding "unlinked-content" then a hole then "tail" (fd 7); DIR as O_DIRECTORY (fd 8)
 * and as O_PATH (fd 9); a FIFO DIR/fifo opened O_RDWR holding "fifo-data" (fd 10);
 * a SIGUSR1 handler with SA_RESTART; SIGUSR2 blocked and pending; 4 MiB of heap filled
 * with the pattern 0x5a; 64 KiB of shared anonymous memory filled with 0xa7; 8 KiB of anonymous
 * memory filled with 0x3c then made PROT_NONE; 1 MiB of read-only anonymous memory, every page read
 * (so it maps the zero page); umask 027.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long counter;

static void on_usr1(int sig) { (void)sig; }

static void die(const char *what) { perror(what); exit(2); }

static void *spin(void *arg) { (void)arg; for (;;) pause(); return NULL; }

static void *short_lived(void *arg) { return arg; }

static void *churn(void *arg)
{
	for (;;) {
		pthread_t t;
		if (pthread_create(&t, NULL, short_lived, arg) == 0)
			pthread_join(t, NULL);
	}
	return NULL;
}

static void at(int want, int got, const char *what)
{
	if (got < 0)
		die(what);
	if (got != want) {
		if (dup2(got, want) < 0)
			die("dup2");
		close(got);
	}
}

int main(int argc, char **argv)
{
	if (argc < 3) { fprintf(stderr, "usage: target DIR MODE\n"); return 2; }
	const char *dir = argv[1], *mode = argv[2];
	char path[4096];
	umask(027);
	/* $TARGET_FD9_TO_20: an fd 9 set up by the caller moves to 20, out of the way. */
	if (getenv("TARGET_FD9_TO_20") && fcntl(9, F_GETFD) >= 0) {
		if (dup2(9, 20) < 0) die("dup2 9 20");
		close(9);
	}

	snprintf(path, sizeof path, "%s/count", dir);
	at(3, open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644), "open count");
	int p[2];
	if (pipe(p) < 0) die("pipe");
	at(4, p[0], "pipe");
	at(5, p[1], "pipe");
	if (write(5, "pipe-data", 9) != 9) die("write pipe");
	at(6, dup(3), "dup");
	snprintf(path, sizeof path, "%s/gone", dir);
	at(7, open(path, O_RDWR | O_CREAT | O_TRUNC, 0600), "open gone");
	if (write(7, "unlinked-content", 16) != 16) die("write gone");
	if (pwrite(7, "tail", 4, 3 << 20) != 4) die("pwrite gone");
	if (unlink(path) < 0) die("unlink");
	lseek(7, 5, SEEK_SET);
	at(8, open(dir, O_RDONLY | O_DIRECTORY), "open dir");
	at(9, open(dir, O_PATH), "open path");
	snprintf(path, sizeof path, "%s/fifo", dir);
	if (mkfifo(path, 0600) < 0) die("mkfifo");
	at(10, open(path, O_RDWR), "open fifo");
	if (write(10, "fifo-data", 9) != 9) die("write fifo");

	if (strstr(mode, "socket"))
		at(11, socket(AF_UNIX, SOCK_STREAM, 0), "socket");
	if (!strcmp(mode, "eventfd"))
		at(11, eventfd(0, 0), "eventfd");
	if (!strcmp(mode, "posixtimer")) {
		timer_t timer;
		struct itimerspec hour = {{0, 0}, {3600, 0}};
		if (timer_create(CLOCK_MONOTONIC, NULL, &timer) || timer_settime(timer, 0, &hour, NULL))
			die("timer_create");
	}
	if (strstr(mode, "thread")) {
		pthread_t t;
		if (pthread_create(&t, NULL, spin, NULL)) die("pthread_create");
	}
	if (strstr(mode, "churn")) {
		pthread_t t;
		if (pthread_create(&t, NULL, churn, NULL)) die("pthread_create");
	}

	struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = SA_RESTART };
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	sigprocmask(SIG_BLOCK, &set, NULL);
	raise(SIGUSR2);

	size_t heap_len = 4 << 20;
	unsigned char *heap = malloc(heap_len);
	memset(heap, 0x5a, heap_len);
	unsigned char *shared = mmap(NULL, 64 << 10, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shared == MAP_FAILED) die("mmap shared");
	memset(shared, 0xa7, 64 << 10);
	unsigned char *hidden = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (hidden == MAP_FAILED) die("mmap hidden");
	memset(hidden, 0x3c, 8192);
	if (mprotect(hidden, 8192, PROT_NONE) < 0) die("mprotect");
	volatile unsigned char *readonly = mmap(NULL, 1 << 20, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (readonly == MAP_FAILED) die("mmap readonly");
	for (size_t i = 0; i < (1 << 20); i += 4096)
		(void)readonly[i];
	if (!strcmp(mode, "big")) {
		size_t len = (size_t)atol(getenv("TARGET_MIB")) << 20;
		unsigned char *big = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (big == MAP_FAILED) die("mmap big");
		for (size_t i = 0; i < len; i += 4096)
			memset(big + i, (int)(i >> 12), 4096);
	}

	printf("ready %d\n", getpid());
	fflush(stdout);
	if (!strcmp(mode, "busy")) {
		for (;;) {
			if ((++counter & ((1UL << 22) - 1)) == 0) {
				char line[32];
				int len = snprintf(line, sizeof line, "%lu\n", counter >> 22);
				if (write(3, line, len) != len) die("write count");
			}
		}
	}
	for (;;) {
		char line[32];
		int len = snprintf(line, sizeof line, "%lu\n", counter++);
		if (write(3, line, len) != len) die("write count");
		struct timespec ts = { 0, 2000000 };
		nanosleep(&ts, NULL);
	}
}
