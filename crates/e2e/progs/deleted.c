/* deleted: a file unlinked while open.
 * Creates <dir>/deleted-file O_RDWR, writes 100000 known bytes, moves the offset to 12345, unlinks
 * the file and keeps the fd. After go: the fd still refers to an unlinked file (st_nlink 0) of the
 * same size, content and offset, still O_RDWR, and a write through it reads back.
 * Corrupt switch: "deleted" (one byte changed through the fd before the check). */
#include "common.h"

#define DEL_BYTES 100000
#define DEL_POS 12345

static unsigned char byte_at(size_t i)
{
	return (unsigned char)(e2e_mix(0xde1e7ed + i / 8) >> (8 * (i % 8)));
}

int main(int argc, char **argv)
{
	e2e_init(argc, argv, "");
	char path[PATH_MAX];
	e2e_join(path, "deleted-file");
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		E2E_DIE("open %s: %s", path, strerror(errno));
	static unsigned char buf[DEL_BYTES];
	for (size_t i = 0; i < DEL_BYTES; i++)
		buf[i] = byte_at(i);
	if (write(fd, buf, DEL_BYTES) != DEL_BYTES || lseek(fd, DEL_POS, SEEK_SET) != DEL_POS)
		E2E_DIE("write/seek %s: %s", path, strerror(errno));
	if (unlink(path) != 0)
		E2E_DIE("unlink %s: %s", path, strerror(errno));
	e2e_ready();
	e2e_wait_go(10);

	if (e2e_corrupt("deleted") && pwrite(fd, "X", 1, 777) != 1)
		E2E_DIE("corrupting: %s", strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0)
		E2E_DIE("fstat: %s", strerror(errno));
	E2E_CHECK(st.st_nlink == 0, "the file has %ld links, want 0 (unlinked)", (long)st.st_nlink);
	E2E_CHECK(st.st_size == DEL_BYTES, "size %lld, want %d", (long long)st.st_size, DEL_BYTES);
	E2E_CHECK(access(path, F_OK) != 0, "%s exists again", path);
	off_t pos = lseek(fd, 0, SEEK_CUR);
	E2E_CHECK(pos == DEL_POS, "offset %lld, want %d", (long long)pos, DEL_POS);
	int fl = fcntl(fd, F_GETFL);
	E2E_CHECK((fl & O_ACCMODE) == O_RDWR, "access mode %#x, want O_RDWR", fl & O_ACCMODE);
	memset(buf, 0, sizeof(buf));
	ssize_t n = pread(fd, buf, DEL_BYTES, 0);
	E2E_CHECK(n == DEL_BYTES, "read %zd bytes, want %d", n, DEL_BYTES);
	for (size_t i = 0; i < DEL_BYTES; i++)
		if (!E2E_CHECK(buf[i] == byte_at(i), "byte %zu is %#x, want %#x", i, buf[i], byte_at(i)))
			break;
	char back[6] = { 0 };
	E2E_CHECK(write(fd, "hello", 5) == 5 && pread(fd, back, 5, DEL_POS) == 5 &&
			  memcmp(back, "hello", 5) == 0,
		  "a write through the restored fd did not read back");
	e2e_finish();
}
