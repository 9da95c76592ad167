/* pipe: data in flight in a pipe, and a process blocked in read() on a FIFO.
 * Creates a pipe and writes 40000 known bytes into it without reading them (both ends stay open),
 * creates the FIFO <dir>/fifo, opens it O_RDWR, writes ready, and blocks in read() on the FIFO.
 * The test writes "go\n" into the FIFO after the restore (there is no go file for this program).
 * Then: the FIFO gave exactly "go\n"; the pipe still holds exactly the 40000 bytes, in order; the
 * pipe is then empty; both pipe ends kept their access modes.
 * Corrupt switch: "pipe" (one byte consumed before the check). */
#include "common.h"

#define PIPE_BYTES 40000

static unsigned char byte_at(size_t i)
{
	return (unsigned char)(e2e_mix(i / 8) >> (8 * (i % 8)));
}

int main(int argc, char **argv)
{
	e2e_init(argc, argv, "");
	int p[2];
	if (pipe(p) != 0)
		E2E_DIE("pipe: %s", strerror(errno));
	static unsigned char buf[PIPE_BYTES + 1];
	for (size_t i = 0; i < PIPE_BYTES; i++)
		buf[i] = byte_at(i);
	if (write(p[1], buf, PIPE_BYTES) != PIPE_BYTES)
		E2E_DIE("write into the pipe: %s", strerror(errno));
	char fifo[PATH_MAX];
	e2e_join(fifo, "fifo");
	if (mkfifo(fifo, 0600) != 0 && errno != EEXIST)
		E2E_DIE("mkfifo %s: %s", fifo, strerror(errno));
	int ff = open(fifo, O_RDWR);
	if (ff < 0)
		E2E_DIE("open %s: %s", fifo, strerror(errno));
	e2e_ready();

	char msg[16];
	ssize_t n;
	while ((n = read(ff, msg, sizeof(msg) - 1)) < 0 && errno == EINTR)
		;
	if (n < 0)
		E2E_DIE("read the FIFO: %s", strerror(errno));
	msg[n] = 0;
	printf("pipe: the FIFO said %zd bytes\n", n);
	E2E_CHECK(n == 3 && memcmp(msg, "go\n", 3) == 0, "the FIFO gave %zd bytes '%s', want 'go\\n'",
		  n, msg);

	if (e2e_corrupt("pipe") && read(p[0], buf, 1) != 1)
		E2E_DIE("corrupting: %s", strerror(errno));
	int fl0 = fcntl(p[0], F_GETFL), fl1 = fcntl(p[1], F_GETFL);
	E2E_CHECK((fl0 & O_ACCMODE) == O_RDONLY && (fl1 & O_ACCMODE) == O_WRONLY,
		  "pipe ends have access modes %#x/%#x", fl0 & O_ACCMODE, fl1 & O_ACCMODE);
	if (fcntl(p[0], F_SETFL, fl0 | O_NONBLOCK) != 0)
		E2E_DIE("fcntl O_NONBLOCK: %s", strerror(errno));
	size_t got = 0;
	memset(buf, 0, sizeof(buf));
	while (got <= PIPE_BYTES) {
		n = read(p[0], buf + got, PIPE_BYTES + 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	int err = errno;
	E2E_CHECK(got == PIPE_BYTES, "the pipe held %zu bytes, want %d", got, PIPE_BYTES);
	E2E_CHECK(n < 0 && err == EAGAIN, "the pipe did not end empty (read returned %zd, %s)", n,
		  strerror(err));
	for (size_t i = 0; i < got && i < PIPE_BYTES; i++)
		if (!E2E_CHECK(buf[i] == byte_at(i), "pipe byte %zu is %#x, want %#x", i, buf[i],
			       byte_at(i)))
			break;
	e2e_finish();
}
