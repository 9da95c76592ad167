/* Shared protocol helpers of the crcli end-to-end test programs (see README.md in this directory).
 *
 * Every program: argv[1] is its work directory. It builds its state, writes <dir>/ready atomically,
 * keeps running until <dir>/go exists (or, for the pipe program, until "go\n" arrives on <dir>/fifo),
 * then verifies its state, writes <dir>/result ("PASS\n" or "FAIL: why\n") atomically and exits 0 or 1.
 * If <dir>/corrupt exists when the program starts verifying, its first word names a piece of state
 * that the program deliberately damages before checking, to prove that the check can fail.
 *
 * Header-only: each program is a single .c file that includes this. */
#ifndef CRCLI_E2E_COMMON_H
#define CRCLI_E2E_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

static const char *e2e_dir;
static const char *e2e_name;
static char e2e_first_failure[512];
static unsigned e2e_failures;
static char e2e_corrupt_word[64];
static int e2e_corrupt_loaded;

/* Writes "<e2e_dir>/<name>" into out (PATH_MAX bytes). */
static __attribute__((unused)) void e2e_join(char *out, const char *name)
{
	if (snprintf(out, PATH_MAX, "%s/%s", e2e_dir, name) >= PATH_MAX) {
		fprintf(stderr, "%s: path too long: %s/%s\n", e2e_name, e2e_dir, name);
		exit(2);
	}
}

/* Current CLOCK_MONOTONIC time in nanoseconds. */
static __attribute__((unused)) int64_t e2e_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Sleeps at least ns nanoseconds with nanosleep, resuming after EINTR with the remaining time. */
static __attribute__((unused)) void e2e_sleep_ns(int64_t ns)
{
	struct timespec req = { .tv_sec = ns / 1000000000LL, .tv_nsec = ns % 1000000000LL }, rem;
	while (nanosleep(&req, &rem) != 0 && errno == EINTR)
		req = rem;
}

/* Writes content to <dir>/<name> atomically: a temporary file, then rename. Exits 2 on error. */
static __attribute__((unused)) void e2e_write_atomic(const char *name, const char *content)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	e2e_join(path, name);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	size_t len = strlen(content);
	if (fd < 0 || write(fd, content, len) != (ssize_t)len || close(fd) != 0 || rename(tmp, path) != 0) {
		fprintf(stderr, "%s: writing %s: %s\n", e2e_name, path, strerror(errno));
		exit(2);
	}
}

/* Parses the arguments common to all programs; usage describes the rest. */
static __attribute__((unused)) void e2e_init(int argc, char **argv, const char *usage)
{
	e2e_name = argc > 0 ? argv[0] : "e2e";
	const char *slash = strrchr(e2e_name, '/');
	if (slash)
		e2e_name = slash + 1;
	if (argc < 2) {
		fprintf(stderr, "usage: %s DIR %s\n", e2e_name, usage);
		exit(2);
	}
	e2e_dir = argv[1];
	setvbuf(stdout, NULL, _IOLBF, 0);
}

/* Announces that the state is built: <dir>/ready. */
static __attribute__((unused)) void e2e_ready(void)
{
	char content[64];
	snprintf(content, sizeof(content), "%d\n", (int)getpid());
	e2e_write_atomic("ready", content);
	printf("%s: ready (pid %d)\n", e2e_name, (int)getpid());
}

/* True once the test has created <dir>/go. */
static __attribute__((unused)) int e2e_go(void)
{
	char path[PATH_MAX];
	e2e_join(path, "go");
	return access(path, F_OK) == 0;
}

/* Polls for <dir>/go every poll_ms milliseconds. */
static __attribute__((unused)) void e2e_wait_go(int64_t poll_ms)
{
	while (!e2e_go())
		e2e_sleep_ns(poll_ms * 1000000LL);
}

/* True if <dir>/corrupt names `what`: the program must damage that piece of state before checking. */
static __attribute__((unused)) int e2e_corrupt(const char *what)
{
	if (!e2e_corrupt_loaded) {
		char path[PATH_MAX];
		e2e_join(path, "corrupt");
		FILE *f = fopen(path, "re");
		if (f) {
			if (fscanf(f, "%63s", e2e_corrupt_word) != 1)
				e2e_corrupt_word[0] = 0;
			fclose(f);
		}
		e2e_corrupt_loaded = 1;
	}
	if (strcmp(e2e_corrupt_word, what) == 0) {
		printf("%s: corrupting %s on purpose\n", e2e_name, what);
		return 1;
	}
	return 0;
}

/* Records a failed check (the first one goes into the result file; all go to stderr). */
__attribute__((format(printf, 1, 2))) static void e2e_failf(const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: FAIL: %s\n", e2e_name, msg);
	if (e2e_failures++ == 0)
		snprintf(e2e_first_failure, sizeof(e2e_first_failure), "%s", msg);
}

/* Checks cond; on failure records the formatted message. Returns cond. */
#define E2E_CHECK(cond, ...) ((cond) ? 1 : (e2e_failf(__VA_ARGS__), 0))

/* Writes <dir>/result and exits: 0 with "PASS" if no check failed, else 1 with the first failure. */
static __attribute__((unused)) _Noreturn void e2e_finish(void)
{
	char content[600];
	if (e2e_failures == 0) {
		snprintf(content, sizeof(content), "PASS\n");
	} else {
		for (char *p = e2e_first_failure; *p; p++)
			if (*p == '\n')
				*p = ' ';
		snprintf(content, sizeof(content), "FAIL: %s (%u failed checks)\n", e2e_first_failure,
			 e2e_failures);
	}
	e2e_write_atomic("result", content);
	printf("%s: %s", e2e_name, content);
	exit(e2e_failures == 0 ? 0 : 1);
}

/* Fails at once (setup errors): result file, stderr, exit 1. */
#define E2E_DIE(...)                      \
	do {                              \
		e2e_failf(__VA_ARGS__);   \
		e2e_finish();             \
	} while (0)

/* A 64-bit mixing function (splitmix64 finaliser): the pattern generator of the memory checks. */
static __attribute__((unused)) inline uint64_t e2e_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

#endif
