/* The program of `cargo xtask demo` (xtask/src/demo.rs): a process whose open files live on mounts
 * no mount table shows, checkpointed and restored by crcli in the VM.
 *
 * demo DIR
 *   Setup (must run as root):
 *   - mounts a tmpfs on DIR/live, writes DIR/live/sub/notes.txt;
 *   - bind-mounts DIR/live/sub on DIR/bind, opens DIR/bind/notes.txt through the bind, then
 *     detaches the bind (umount2 MNT_DETACH): that fd is on an UNMOUNTED mount (root /sub);
 *   - fsopen/fsconfig/fsmount()s a fresh tmpfs and never attaches it (an ANONYMOUS mount): keeps
 *     the mount fd, creates journal.txt in it with openat(mount fd, ...) and keeps that fd too;
 *   - writes DIR/ready (its pid), then every ~200 ms appends the line "%06u\n" (its counter) to
 *     both files and logs "tick N ..." with both fd positions to stdout (DIR/log).
 *   While running: when DIR/ask exists it writes what it sees of its fds and their mounts (readlink,
 *   fdinfo mnt_id, /proc/self/mountinfo, statx unique mount id, statmount(STATMOUNT_BY_FD)) into
 *   DIR/facts (atomically) and removes DIR/ask.
 *   When DIR/go exists it verifies itself and writes DIR/result (common.h protocol):
 *   - both files hold their header, then the lines 0..N-1 exactly once each, in order (no gap, no
 *     repeat), N being the in-memory counter; each fd's position is the file's end;
 *   - notes.txt is still the file DIR/live/sub/notes.txt (same device and inode), its fd's mount is
 *     in no mount table, and (where the kernel has STATMOUNT_BY_FD) statmount answers for it
 *     without a mount point and with mount root /sub: unmounted;
 *   - journal.txt and the mount fd are on one mount (same unique id), in no mount table, a tmpfs,
 *     and (with STATMOUNT_BY_FD) statmount says ENOENT for both: anonymous;
 *   - every sleep of the loop lasted at least its 200 ms.
 *   If DIR/corrupt names `counter` the program skips a counter value before checking (the check
 *   must then fail). */
#include "common.h"

#include <sys/mount.h>
#include <sys/statfs.h>
#include <sys/syscall.h>

#define NR_FSOPEN 430
#define NR_FSCONFIG 431
#define NR_FSMOUNT 432
#define NR_STATMOUNT 457
#define SC_FSCONFIG_SET_STRING 1u
#define SC_FSCONFIG_CMD_CREATE 6u
#define SC_FSMOUNT_CLOEXEC 1u
#define SC_STATMOUNT_SB_BASIC 0x1ull
#define SC_STATMOUNT_MNT_BASIC 0x2ull
#define SC_STATMOUNT_MNT_ROOT 0x8ull
#define SC_STATMOUNT_MNT_POINT 0x10ull
#define SC_STATMOUNT_FS_TYPE 0x20ull
#define SC_STATMOUNT_BY_FD 0x1u
#define SC_STATX_MNT_ID_UNIQUE 0x4000u
#define SC_TMPFS_MAGIC 0x01021994L

#define PERIOD_NS (200LL * 1000000LL)
#define HEADER_NOTES "notes.txt: on a bind of DIR/live/sub, unmounted with umount2(MNT_DETACH)\n"
#define HEADER_JOURNAL "journal.txt: on an fsmount()ed tmpfs that was never attached\n"

static int fd_notes = -1, fd_mount = -1, fd_journal = -1;
static unsigned counter;
static unsigned short_sleeps;

static int sys_fsopen(const char *fs, unsigned flags)
{
	return (int)syscall(NR_FSOPEN, fs, flags);
}

static int sys_fsconfig(int fd, unsigned cmd, const char *key, const char *value, int aux)
{
	return (int)syscall(NR_FSCONFIG, fd, cmd, key, value, aux);
}

static int sys_fsmount(int fd, unsigned flags, unsigned attr)
{
	return (int)syscall(NR_FSMOUNT, fd, flags, attr);
}

/* What statmount(STATMOUNT_BY_FD) said about the mount of an fd. */
struct sm {
	int err; /* 0 on success, else the errno */
	uint64_t mask, mnt_id;
	char root[PATH_MAX], point[PATH_MAX], fstype[64];
};

static void sm_string(const unsigned char *buf, size_t len, size_t field, char *out, size_t outlen)
{
	uint32_t off;
	memcpy(&off, buf + field, 4);
	out[0] = 0;
	if (512 + (size_t)off < len)
		snprintf(out, outlen, "%s", (const char *)buf + 512 + off);
}

/* statmount(STATMOUNT_BY_FD) of fd; fd -1 is the feature probe (EBADF: supported). */
static void statmount_by_fd(int fd, struct sm *out)
{
	static unsigned char buf[1 << 16];
	uint64_t req[4] = { 0, 0,
			    SC_STATMOUNT_SB_BASIC | SC_STATMOUNT_MNT_BASIC | SC_STATMOUNT_MNT_ROOT |
				    SC_STATMOUNT_MNT_POINT | SC_STATMOUNT_FS_TYPE,
			    0 };
	uint32_t head[2] = { 32, (uint32_t)fd };
	memcpy(req, head, 8);
	memset(out, 0, sizeof(*out));
	memset(buf, 0, sizeof(buf));
	if (syscall(NR_STATMOUNT, req, buf, sizeof(buf) - 1, SC_STATMOUNT_BY_FD) != 0) {
		out->err = errno;
		return;
	}
	memcpy(&out->mask, buf + 8, 8);
	memcpy(&out->mnt_id, buf + 40, 8);
	if (out->mask & SC_STATMOUNT_MNT_ROOT)
		sm_string(buf, sizeof(buf), 104, out->root, sizeof(out->root));
	if (out->mask & SC_STATMOUNT_MNT_POINT)
		sm_string(buf, sizeof(buf), 108, out->point, sizeof(out->point));
	if (out->mask & SC_STATMOUNT_FS_TYPE)
		sm_string(buf, sizeof(buf), 36, out->fstype, sizeof(out->fstype));
}

static int have_by_fd(void)
{
	struct sm s;
	statmount_by_fd(-1, &s);
	return s.err == EBADF;
}

static uint64_t mnt_unique(int fd)
{
	struct statx stx;
	if (statx(fd, "", AT_EMPTY_PATH, SC_STATX_MNT_ID_UNIQUE, &stx) != 0 ||
	    !(stx.stx_mask & SC_STATX_MNT_ID_UNIQUE))
		return 0;
	return stx.stx_mnt_id;
}

/* The short mount id of fd (fdinfo "mnt_id:"), or -1. */
static int fdinfo_mnt_id(int fd)
{
	char path[64], line[256];
	int id = -1;
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "mnt_id: %d", &id) == 1)
			break;
	fclose(f);
	return id;
}

/* Whether the short mount id appears as the first field of a /proc/self/mountinfo line. */
static int in_mountinfo(int id)
{
	char line[4096];
	int found = 0, first;
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%d", &first) == 1 && first == id)
			found = 1;
	fclose(f);
	return found;
}

static void fd_link(int fd, char *out, size_t len)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, out, len - 1);
	out[n < 0 ? 0 : n] = 0;
}

/* One line about fd and its mount into buf. */
static void describe(char *buf, size_t len, int fd, const char *what, int by_fd)
{
	char link[PATH_MAX], sm_text[PATH_MAX * 2 + 256];
	int id = fdinfo_mnt_id(fd);
	fd_link(fd, link, sizeof(link));
	struct sm s;
	if (!by_fd) {
		snprintf(sm_text, sizeof(sm_text), "statmount BY_FD: not on this kernel (Linux 7.0)");
	} else {
		statmount_by_fd(fd, &s);
		if (s.err == ENOENT)
			snprintf(sm_text, sizeof(sm_text), "statmount BY_FD: ENOENT => anonymous mount");
		else if (s.err)
			snprintf(sm_text, sizeof(sm_text), "statmount BY_FD: %s", strerror(s.err));
		else if (s.mask & SC_STATMOUNT_MNT_POINT)
			snprintf(sm_text, sizeof(sm_text),
				 "statmount BY_FD: %s, mount root \"%s\", mount point \"%s\" => attached", s.fstype,
				 s.root, s.point);
		else
			snprintf(sm_text, sizeof(sm_text),
				 "statmount BY_FD: %s, mount root \"%s\", no mount point => unmounted", s.fstype,
				 s.root);
	}
	snprintf(buf, len, "fd %d %-13s -> \"%.512s\"; mount %d (unique %llu) %s /proc/self/mountinfo; %.2048s\n", fd,
		 what, link, id, (unsigned long long)mnt_unique(fd), in_mountinfo(id) ? "IN" : "not in", sm_text);
}

static void write_facts(void)
{
	char all[3 * 4096 + 128], one[4096];
	int by_fd = have_by_fd();
	snprintf(all, sizeof(all), "pid %d, counter %u, the process's own view of its fds:\n", (int)getpid(),
		 counter);
	describe(one, sizeof(one), fd_notes, "(notes.txt)", by_fd);
	strncat(all, one, sizeof(all) - strlen(all) - 1);
	describe(one, sizeof(one), fd_mount, "(mount fd)", by_fd);
	strncat(all, one, sizeof(all) - strlen(all) - 1);
	describe(one, sizeof(one), fd_journal, "(journal.txt)", by_fd);
	strncat(all, one, sizeof(all) - strlen(all) - 1);
	e2e_write_atomic("facts", all);
}

static void must(int ok, const char *what)
{
	if (!ok)
		E2E_DIE("setup: %s: %s", what, strerror(errno));
}

static void setup(void)
{
	char live[PATH_MAX], sub[PATH_MAX], bind[PATH_MAX], path[PATH_MAX];
	e2e_join(live, "live");
	e2e_join(bind, "bind");
	e2e_join(sub, "live/sub");
	must(mkdir(live, 0755) == 0 || errno == EEXIST, "mkdir DIR/live");
	must(mkdir(bind, 0755) == 0 || errno == EEXIST, "mkdir DIR/bind");
	must(mount("demo-live", live, "tmpfs", 0, "size=4m,mode=0755") == 0, "mount tmpfs on DIR/live");
	must(mkdir(sub, 0755) == 0, "mkdir DIR/live/sub");
	e2e_join(path, "live/sub/notes.txt");
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	must(fd >= 0, "creating DIR/live/sub/notes.txt");
	must(write(fd, HEADER_NOTES, strlen(HEADER_NOTES)) == (ssize_t)strlen(HEADER_NOTES), "writing notes.txt");
	close(fd);
	must(mount(sub, bind, NULL, MS_BIND, NULL) == 0, "bind-mounting DIR/live/sub on DIR/bind");
	e2e_join(path, "bind/notes.txt");
	fd_notes = open(path, O_RDWR);
	must(fd_notes >= 0, "opening DIR/bind/notes.txt");
	must(lseek(fd_notes, 0, SEEK_END) == (off_t)strlen(HEADER_NOTES), "seeking to the end of notes.txt");
	must(umount2(bind, MNT_DETACH) == 0, "umount2(DIR/bind, MNT_DETACH)");

	int fs = sys_fsopen("tmpfs", 0);
	must(fs >= 0, "fsopen tmpfs");
	must(sys_fsconfig(fs, SC_FSCONFIG_SET_STRING, "size", "4m", 0) == 0 &&
		     sys_fsconfig(fs, SC_FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0,
	     "fsconfig");
	fd_mount = sys_fsmount(fs, 0, 0);
	must(fd_mount >= 0, "fsmount");
	close(fs);
	fd_journal = openat(fd_mount, "journal.txt", O_RDWR | O_CREAT | O_EXCL, 0644);
	must(fd_journal >= 0, "openat(mount fd, journal.txt)");
	must(write(fd_journal, HEADER_JOURNAL, strlen(HEADER_JOURNAL)) == (ssize_t)strlen(HEADER_JOURNAL),
	     "writing journal.txt");
}

static void append(int fd, unsigned n, const char *name)
{
	char line[16];
	int len = snprintf(line, sizeof(line), "%06u\n", n);
	if (write(fd, line, (size_t)len) != len)
		E2E_DIE("appending to %s: %s", name, strerror(errno));
}

/* Checks that fd's file is header + "0..n-1" lines and that fd's position is its end. */
static void check_file(int fd, const char *name, const char *header, unsigned n)
{
	struct stat st;
	if (!E2E_CHECK(fstat(fd, &st) == 0, "%s: fstat: %s", name, strerror(errno)))
		return;
	size_t hl = strlen(header);
	size_t want = hl + (size_t)n * 7;
	E2E_CHECK((size_t)st.st_size == want, "%s: size %lld, want %zu (header + %u lines)", name,
		  (long long)st.st_size, want, n);
	off_t pos = lseek(fd, 0, SEEK_CUR);
	E2E_CHECK(pos == st.st_size, "%s: fd position %lld, want the end %lld", name, (long long)pos,
		  (long long)st.st_size);
	char *buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		E2E_DIE("out of memory");
	ssize_t got = pread(fd, buf, (size_t)st.st_size, 0);
	if (E2E_CHECK(got == st.st_size, "%s: pread %zd of %lld bytes", name, got, (long long)st.st_size)) {
		buf[got] = 0;
		E2E_CHECK(strncmp(buf, header, hl) == 0, "%s: header changed", name);
		const char *p = buf + hl;
		unsigned i = 0;
		for (; *p && i < n; i++, p += 7) {
			char want_line[16];
			snprintf(want_line, sizeof(want_line), "%06u\n", i);
			if (!E2E_CHECK(strncmp(p, want_line, 7) == 0, "%s: line %u is \"%.6s\", want %06u (gap or repeat)",
				       name, i, p, i))
				break;
		}
	}
	free(buf);
}

static void verify(void)
{
	int by_fd = have_by_fd();
	if (getenv("CRCLI_VM") && strcmp(getenv("CRCLI_VM"), "1") == 0 && !by_fd)
		e2e_failf("statmount(STATMOUNT_BY_FD) is missing, but CRCLI_VM=1 requires it (Linux 7.0)");
	if (e2e_corrupt("counter"))
		counter++;
	check_file(fd_notes, "notes.txt", HEADER_NOTES, counter);
	check_file(fd_journal, "journal.txt", HEADER_JOURNAL, counter);

	char path[PATH_MAX];
	struct stat a, b;
	e2e_join(path, "live/sub/notes.txt");
	E2E_CHECK(fstat(fd_notes, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino,
		  "notes.txt: not the file DIR/live/sub/notes.txt any more");
	E2E_CHECK(!in_mountinfo(fdinfo_mnt_id(fd_notes)), "notes.txt: its mount is in /proc/self/mountinfo");
	E2E_CHECK(!in_mountinfo(fdinfo_mnt_id(fd_mount)), "mount fd: its mount is in /proc/self/mountinfo");
	uint64_t um = mnt_unique(fd_mount), uj = mnt_unique(fd_journal);
	E2E_CHECK(um != 0 && um == uj, "journal.txt: mount %llu, the mount fd's is %llu (want one mount)",
		  (unsigned long long)uj, (unsigned long long)um);
	struct statfs sf;
	E2E_CHECK(fstatfs(fd_journal, &sf) == 0 && sf.f_type == SC_TMPFS_MAGIC, "journal.txt: not on a tmpfs");
	if (by_fd) {
		struct sm s;
		statmount_by_fd(fd_notes, &s);
		E2E_CHECK(s.err == 0 && !(s.mask & SC_STATMOUNT_MNT_POINT) && strcmp(s.root, "/sub") == 0,
			  "notes.txt: statmount BY_FD: %s, mask %#llx, root \"%s\"; want unmounted with root /sub",
			  strerror(s.err), (unsigned long long)s.mask, s.root);
		statmount_by_fd(fd_mount, &s);
		E2E_CHECK(s.err == ENOENT, "mount fd: statmount BY_FD: %s; want ENOENT (anonymous)",
			  s.err ? strerror(s.err) : "answered");
		statmount_by_fd(fd_journal, &s);
		E2E_CHECK(s.err == ENOENT, "journal.txt: statmount BY_FD: %s; want ENOENT (anonymous)",
			  s.err ? strerror(s.err) : "answered");
	}
	E2E_CHECK(short_sleeps == 0, "%u sleeps of the loop were shorter than 200 ms", short_sleeps);
	e2e_finish();
}

int main(int argc, char **argv)
{
	e2e_init(argc, argv, "(see the top of demo.c)");
	setup();
	e2e_ready();
	char ask[PATH_MAX];
	e2e_join(ask, "ask");
	for (;;) {
		append(fd_notes, counter, "notes.txt");
		append(fd_journal, counter, "journal.txt");
		counter++;
		printf("demo: tick %u  pid %d  notes.txt fd %d pos %lld  journal.txt fd %d pos %lld\n", counter - 1,
		       (int)getpid(), fd_notes, (long long)lseek(fd_notes, 0, SEEK_CUR), fd_journal,
		       (long long)lseek(fd_journal, 0, SEEK_CUR));
		if (access(ask, F_OK) == 0) {
			write_facts();
			unlink(ask);
		}
		if (e2e_go())
			verify();
		int64_t t0 = e2e_mono_ns();
		e2e_sleep_ns(PERIOD_NS);
		if (e2e_mono_ns() - t0 < PERIOD_NS)
			short_sleeps++;
	}
}
