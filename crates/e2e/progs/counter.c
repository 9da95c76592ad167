/* counter: counts in a loop, appending "N\n" to <dir>/count through an fd it keeps open with
 * O_APPEND, and keeps the count in memory; each turn sleeps 5 ms (nanosleep) and measures the sleep
 * with CLOCK_MONOTONIC.
 * After go: the file holds 0..N-1 exactly once each, in order (nothing lost or repeated across the
 * dump), N equals the in-memory counter, the fd still has O_APPEND and FD_CLOEXEC and its offset is
 * at the end, and every sleep lasted at least what was requested.
 * Corrupt switches: "memory" (counter +1), "file" (a repeated line), "sleep" (a short sleep). */
#include "common.h"

#define SLEEP_NS 5000000LL

int main(int argc, char **argv)
{
	e2e_init(argc, argv, "");
	char path[PATH_MAX];
	e2e_join(path, "count");
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		E2E_DIE("open %s: %s", path, strerror(errno));

	uint64_t n = 0, sleeps = 0, short_sleeps = 0;
	int64_t shortest = INT64_MAX;
	for (;;) {
		char line[32];
		int len = snprintf(line, sizeof(line), "%" PRIu64 "\n", n);
		if (write(fd, line, len) != len)
			E2E_DIE("write line %" PRIu64 ": %s", n, strerror(errno));
		n++;
		if (n == 3)
			e2e_ready();
		if (n > 3 && e2e_go())
			break;
		int64_t t0 = e2e_mono_ns();
		e2e_sleep_ns(SLEEP_NS);
		int64_t slept = e2e_mono_ns() - t0;
		sleeps++;
		if (slept < SLEEP_NS)
			short_sleeps++;
		if (slept < shortest)
			shortest = slept;
	}
	printf("counter: go after %" PRIu64 " lines, %" PRIu64 " sleeps, shortest %" PRId64 " ns\n", n,
	       sleeps, shortest);

	if (e2e_corrupt("memory"))
		n++;
	if (e2e_corrupt("file") && write(fd, "0\n", 2) != 2)
		E2E_DIE("corrupting the file: %s", strerror(errno));
	if (e2e_corrupt("sleep"))
		short_sleeps++;

	int flags = fcntl(fd, F_GETFL), fdflags = fcntl(fd, F_GETFD);
	E2E_CHECK(flags >= 0 && (flags & O_APPEND) && (flags & O_ACCMODE) == O_WRONLY,
		  "count fd flags %#x: want O_WRONLY|O_APPEND", flags);
	E2E_CHECK(fdflags >= 0 && (fdflags & FD_CLOEXEC), "count fd lost FD_CLOEXEC (%#x)", fdflags);

	struct stat st;
	if (fstat(fd, &st) != 0)
		E2E_DIE("fstat count fd: %s", strerror(errno));
	off_t pos = lseek(fd, 0, SEEK_CUR);
	E2E_CHECK(pos == st.st_size, "count fd offset %lld, file size %lld", (long long)pos,
		  (long long)st.st_size);

	int rfd = open(path, O_RDONLY | O_CLOEXEC);
	if (rfd < 0)
		E2E_DIE("open %s for reading: %s", path, strerror(errno));
	char *buf = malloc(st.st_size + 1);
	if (!buf)
		E2E_DIE("malloc %lld", (long long)st.st_size);
	ssize_t got = pread(rfd, buf, st.st_size, 0);
	if (got != st.st_size)
		E2E_DIE("read %s: %zd of %lld bytes", path, got, (long long)st.st_size);
	buf[got] = 0;
	close(rfd);

	uint64_t lines = 0;
	for (char *p = buf; *p;) {
		char *end;
		errno = 0;
		unsigned long long v = strtoull(p, &end, 10);
		if (end == p || *end != '\n' || errno) {
			e2e_failf("line %" PRIu64 " of the count file is not a number", lines);
			break;
		}
		if (!E2E_CHECK(v == lines, "line %" PRIu64 " of the count file is %llu (lost or repeated)",
			       lines, v))
			break;
		lines++;
		p = end + 1;
	}
	E2E_CHECK(lines == n, "the count file has %" PRIu64 " lines, the in-memory counter is %" PRIu64,
		  lines, n);
	E2E_CHECK(sleeps >= 3, "only %" PRIu64 " sleeps", sleeps);
	E2E_CHECK(short_sleeps == 0,
		  "%" PRIu64 " of %" PRIu64 " sleeps were shorter than %lld ns (shortest %" PRId64 " ns)",
		  short_sleeps, sleeps, SLEEP_NS, shortest);
	e2e_finish();
}
