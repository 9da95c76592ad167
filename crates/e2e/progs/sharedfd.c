/* sharedfd: two processes sharing one open file description (one file offset).
 *
 * The parent opens DIR/data O_RDWR (no O_APPEND) and forks a child: both hold that one
 * description. They take turns, passing a token over two pipes: the parent writes the record
 * "p<N>\n", the child "c<N>\n", each at the shared offset (plain write(2)). If the description
 * were no longer shared after a restore, each would write at its own offset and overwrite the
 * other's records.
 *
 * After <dir>/go: the parent ends the game after its turn; the child reports its offset and its
 * own pid, session and process group, and exits 0. The parent checks: the file is exactly
 * "p0 c0 p1 c1 ... pK cK" (newline-separated, in order, none missing or overwritten), its offset
 * and the child's both equal the file size, the child is still its child (same pid as before the
 * dump, exit status 0), the child's parent is itself, and the child stayed in its session and
 * process group.
 *
 * Corrupt switches: `offset` (the child moves the shared offset back by one record before its
 * next write, overwriting a record), `exit` (the child exits 3).
 */
#include "common.h"

#include <sys/wait.h>

static int parent_to_child[2], child_to_parent[2];

static void put(int fd, const char *s)
{
	size_t len = strlen(s);
	if (write(fd, s, len) != (ssize_t)len)
		E2E_DIE("write: %s", strerror(errno));
}

/* Reads one line (token) from a pipe; returns its length. */
static size_t get(int fd, char *buf, size_t size)
{
	size_t n = 0;
	while (n + 1 < size) {
		ssize_t r = read(fd, buf + n, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			E2E_DIE("read token: %s", r < 0 ? strerror(errno) : "end of file");
		if (buf[n] == '\n')
			break;
		n++;
	}
	buf[n] = 0;
	return n;
}

static void record(int fd, char who, unsigned n)
{
	char rec[32];
	snprintf(rec, sizeof(rec), "%c%u\n", who, n);
	put(fd, rec);
}

static _Noreturn void child(int data)
{
	char tok[64];
	int corrupt_offset = 0, corrupt_exit = 0, checked = 0;
	for (unsigned n = 0;; n++) {
		get(parent_to_child[0], tok, sizeof(tok));
		if (!strcmp(tok, "stop"))
			break;
		if (!checked && !strcmp(tok, "check")) {
			/* The verification has begun: load the corrupt switches once. */
			corrupt_offset = e2e_corrupt("offset");
			corrupt_exit = e2e_corrupt("exit");
			checked = 1;
		}
		if (corrupt_offset) {
			lseek(data, -8, SEEK_CUR);
			corrupt_offset = 0;
		}
		record(data, 'c', n);
		put(child_to_parent[1], "go\n");
	}
	char msg[128];
	snprintf(msg, sizeof(msg), "%lld %d %d %d %d\n", (long long)lseek(data, 0, SEEK_CUR),
		 (int)getpid(), (int)getppid(), (int)getsid(0), (int)getpgid(0));
	put(child_to_parent[1], msg);
	_exit(corrupt_exit ? 3 : 0);
}

int main(int argc, char **argv)
{
	e2e_init(argc, argv, "");
	char path[PATH_MAX];
	e2e_join(path, "data");
	int data = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (data < 0)
		E2E_DIE("open %s: %s", path, strerror(errno));
	if (pipe(parent_to_child) < 0 || pipe(child_to_parent) < 0)
		E2E_DIE("pipe: %s", strerror(errno));
	pid_t pid = fork();
	if (pid < 0)
		E2E_DIE("fork: %s", strerror(errno));
	if (pid == 0)
		child(data);
	pid_t my_sid = getsid(0), my_pgid = getpgid(0);

	unsigned n = 0;
	char tok[128];
	int verifying = 0;
	for (;; n++) {
		record(data, 'p', n);
		if (n == 100)
			e2e_ready();
		if (verifying >= 3)
			break;
		/* Once go exists, three more turns with the child (the first tells it to load its
		 * corrupt switches), then stop. */
		if (verifying || (n > 100 && e2e_go()))
			verifying++;
		put(parent_to_child[1], verifying == 1 ? "check\n" : "turn\n");
		get(child_to_parent[0], tok, sizeof(tok));
		e2e_sleep_ns(1000000);
	}
	put(parent_to_child[1], "stop\n");
	get(child_to_parent[0], tok, sizeof(tok));
	long long child_off;
	int cpid, cppid, csid, cpgid;
	if (sscanf(tok, "%lld %d %d %d %d", &child_off, &cpid, &cppid, &csid, &cpgid) != 5)
		E2E_DIE("the child said %s", tok);
	int status;
	pid_t w = waitpid(pid, &status, 0);
	E2E_CHECK(w == pid, "waitpid(%d) gave %d: %s", (int)pid, (int)w, strerror(errno));
	E2E_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child ended with status %#x",
		  status);
	E2E_CHECK(cpid == pid, "the child is pid %d, it was %d", cpid, (int)pid);
	E2E_CHECK(cppid == getpid(), "the child's parent is %d, not %d", cppid, (int)getpid());
	E2E_CHECK(csid == my_sid && cpgid == my_pgid,
		  "the child is in session %d group %d, the parent in %d %d", csid, cpgid,
		  (int)my_sid, (int)my_pgid);

	/* The file: p0 c0 p1 c1 ... p(n-1) c(n-1) pn. */
	long long my_off = lseek(data, 0, SEEK_CUR);
	struct stat st;
	fstat(data, &st);
	E2E_CHECK(my_off == st.st_size && child_off == st.st_size,
		  "offsets: parent %lld, child %lld, file size %lld (not one shared offset)", my_off,
		  child_off, (long long)st.st_size);
	char *buf = malloc(st.st_size + 1);
	if (!buf || pread(data, buf, st.st_size, 0) != st.st_size)
		E2E_DIE("read back %s", path);
	buf[st.st_size] = 0;
	unsigned line = 0;
	for (char *p = buf, *nl; *p; p = nl + 1, line++) {
		nl = strchr(p, '\n');
		if (!nl) {
			e2e_failf("the file ends without a newline");
			break;
		}
		*nl = 0;
		char want[32];
		snprintf(want, sizeof(want), "%c%u", line % 2 ? 'c' : 'p', line / 2);
		if (!E2E_CHECK(!strcmp(p, want), "record %u is %s, want %s", line, p, want))
			break;
	}
	E2E_CHECK(line == 2 * n + 1, "the file holds %u records, want %u", line, 2 * n + 1);
	e2e_finish();
}
