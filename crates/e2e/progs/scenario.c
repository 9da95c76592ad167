/* scenario: the ten acceptance scenarios of SCENARIOS.md (files on unmounted and anonymous mounts), and
 * five of crcli's own (11: a block device, 12: a FIFO, 13 and 15: unlinked files, 14: all three mount
 * kinds), as one self-verifying program, `scenario DIR N` with N = 1..15, following the protocol of README.md.
 *
 * The program builds the mounts itself under DIR (in the mount namespace it runs in: the tests run it
 * inside a private one made by scenario-ns), opens its fds, records everything about them in memory,
 * checks that the state is what the scenario describes (a setup failure is reported as a FAIL), writes
 * DIR/fds (one line per fd: "NUMBER LABEL STATE") and DIR/ready, and waits for DIR/go. Then it checks,
 * for every fd, against what it recorded:
 *   - open flags (F_GETFL) and fd flags (F_GETFD), the position, the content, mode/owner/size/mtime;
 *   - the same file as before (device and inode) where a live mount of it exists, else the same kind
 *     of filesystem (f_type) with the same size limit (f_blocks);
 *   - the mount flags (fstatvfs: ro, nosuid, nodev, noexec, atime flags) and those the scenario set;
 *   - the mount state: attached <=> the fd's mount id is in /proc/self/mountinfo <=> statmount by
 *     unique id answers (with the same mount root and mount point); with STATMOUNT_BY_FD (Linux 7.0):
 *     attached => MNT_POINT given, unmounted => answer without MNT_POINT and with the same mount root,
 *     anonymous => ENOENT; the path /proc shows (relative to the mount root when not attached);
 *   - an attached fd is still on the very same live mount (same unique mount id);
 *   - fds that shared a mount share one (same statx unique mount id), the others do not;
 * then the scenario's own points, and last the writes: a write through each writable fd is visible
 * through the live mount (or through the mount fd, or the fd itself when nothing else reaches the
 * filesystem), a write through the live mount is visible through read-only fds, a read-only mount
 * refuses writes (EROFS), a directory fd still opens and creates files, and in scenario 7 the mount fd
 * still attaches with move_mount (under DIR, detached again afterwards).
 *
 * Without STATMOUNT_BY_FD (Linux 6.18) the BY_FD checks are left out and the log says so, except when
 * CRCLI_VM=1 (the test VM runs a kernel that must have it): then that is a failure.
 *
 * Scenarios (SCENARIOS.md):                                    corrupt switches (first word of DIR/corrupt)
 *  1 regular: tmpfs DIR/src attached, "file" O_RDWR at offset 5   data pos flags mount
 *  2 unmounted bind of DIR/src, "file" O_RDWR|O_APPEND            data pos flags mount write
 *  3 tmpfs (nosuid, size=4m) whose only mount was detached: a sparse file with mode, owner, mtime
 *    and an xattr, O_RDWR at offset 42                            data pos mount meta hole xattr
 *  4 unmounted bind of DIR/src/sub (root /sub), "file" O_RDONLY at 3   data pos root write
 *  5 unmounted bind of DIR/src: an O_DIRECTORY fd of its root and an O_PATH fd of "file"   share mount
 *  6 unmounted bind of DIR/src made ro,nosuid, "file" O_RDONLY    attr write
 *  7 open_tree(OPEN_TREE_CLONE) of DIR/src: the mount fd and "file" opened through it, O_RDWR at 7;
 *    after the checks the mount fd is attached at DIR/attach with move_mount, then detached   mountfd share pos
 *  8 fsmount()ed tmpfs (size=8m, mode=0750, nodev, noexec) never attached: its mount fd, a tree
 *    (dirs, owner, modes, mtimes, symlink, hard link, sparse file, xattr) and "file" O_RDWR|O_APPEND   tree mountfd share
 *  9 unmounted bind of the single file DIR/src/file (root /file), O_RDWR at 4   data root write
 * 10 two fds on one unmounted bind of DIR/src ("a" O_RDONLY at 2, "b" O_WRONLY|O_APPEND) and a third
 *    on the live DIR/src ("c" O_RDONLY)                           share separate flags
 * 11 (crcli's own) an ext4 filesystem on the block device named in DIR/blockdev: "sub/file" O_RDWR
 *    at 6 through a bind of its "sub"; the bind and the filesystem's only mount detached, so only a
 *    remount of the device brings it back (root /sub)          data pos write
 * 12 (crcli's own) a FIFO on an unmounted bind of DIR/src: a reader-writer fd holding unread bytes and
 *    a non-blocking reader                                       data share mount
 * 13 (crcli's own) a tmpfs whose only mount was detached: "dir/gone" unlinked while open (O_RDWR at 9)
 *    and "kept"                                                   data pos write share
 * 14 (crcli's own) the three kinds at once: "c" attached, "a" on a detached bind of DIR/src, and the
 *    mount fd of an open_tree clone of DIR/src with "b" opened through it   data share separate
 * 15 (crcli's own) "gone" unlinked while open (O_RDWR at 5) on an unmounted bind of DIR/src: restored
 *    as an O_TMPFILE of the same tmpfs                            data pos write
 * Every corruption mimics a restore bug (e.g. `share`: one fd reopened through a second clone, `write`:
 * the file copied into a fresh tmpfs, `root`: the file reopened through a bind with the wrong root). */
#include "common.h"

#include <dirent.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>

/* ---- raw syscalls (x86_64 numbers from UAPI.md; glibc 2.36 has no statmount) ---- */

#define NR_OPEN_TREE 428
#define NR_MOVE_MOUNT 429
#define NR_FSOPEN 430
#define NR_FSCONFIG 431
#define NR_FSMOUNT 432
#define NR_MOUNT_SETATTR 442
#define NR_STATMOUNT 457

#define SC_OPEN_TREE_CLONE 1u
#define SC_MOVE_MOUNT_F_EMPTY_PATH 0x4u
#define SC_FSCONFIG_SET_STRING 1u
#define SC_FSCONFIG_CMD_CREATE 6u
#define SC_FSMOUNT_CLOEXEC 1u
#define SC_MOUNT_ATTR_RDONLY 0x1ull
#define SC_MOUNT_ATTR_NOSUID 0x2ull
#define SC_MOUNT_ATTR_NODEV 0x4ull
#define SC_MOUNT_ATTR_NOEXEC 0x8ull
#define SC_STATMOUNT_SB_BASIC 0x1ull
#define SC_STATMOUNT_MNT_BASIC 0x2ull
#define SC_STATMOUNT_MNT_ROOT 0x8ull
#define SC_STATMOUNT_MNT_POINT 0x10ull
#define SC_STATMOUNT_BY_FD 0x1u
#define SC_STATX_MNT_ID_UNIQUE 0x4000u
#define SC_TMPFS_MAGIC 0x01021994L

/* The mount flags fstatvfs reports that crcli must keep. */
#define VFS_MASK (ST_RDONLY | ST_NOSUID | ST_NODEV | ST_NOEXEC | ST_NOATIME | ST_NODIRATIME | ST_RELATIME)

static int sys_open_tree(int dfd, const char *path, unsigned flags)
{
	return (int)syscall(NR_OPEN_TREE, dfd, path, flags);
}

static int sys_move_mount(int from_dfd, const char *from, int to_dfd, const char *to, unsigned flags)
{
	return (int)syscall(NR_MOVE_MOUNT, from_dfd, from, to_dfd, to, flags);
}

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

struct sc_mount_attr {
	uint64_t attr_set, attr_clr, propagation, userns_fd;
};

static int sys_mount_setattr(int dfd, const char *path, unsigned flags, struct sc_mount_attr *attr)
{
	return (int)syscall(NR_MOUNT_SETATTR, dfd, path, flags, attr, sizeof(*attr));
}

/* What statmount said (UAPI.md layout: mask at 8, mnt_id at 40, mnt_attr at 64, string offsets of
 * mnt_root at 104 and mnt_point at 108, strings from 512). */
struct sm {
	int err; /* 0 on success, else the errno */
	uint64_t mask, mnt_id, attr;
	char root[PATH_MAX], point[PATH_MAX];
};

static void sm_string(const unsigned char *buf, size_t len, size_t field, char *out)
{
	uint32_t off;
	memcpy(&off, buf + field, 4);
	out[0] = 0;
	if (512 + (size_t)off < len)
		snprintf(out, PATH_MAX, "%.*s", PATH_MAX - 1, (const char *)buf + 512 + off);
}

/* statmount by unique id in the caller's namespace (by_fd = 0), or of the mount of fd (by_fd = 1). */
static void do_statmount(int by_fd, int fd, uint64_t id, struct sm *out)
{
	static unsigned char buf[1 << 16];
	uint64_t req[4] = { 0, by_fd ? 0 : id,
			    SC_STATMOUNT_SB_BASIC | SC_STATMOUNT_MNT_BASIC | SC_STATMOUNT_MNT_ROOT |
				    SC_STATMOUNT_MNT_POINT,
			    0 };
	uint32_t head[2] = { 32, by_fd ? (uint32_t)fd : 0 };
	memcpy(req, head, 8);
	memset(out, 0, sizeof(*out));
	memset(buf, 0, 1024);
	if (syscall(NR_STATMOUNT, req, buf, sizeof(buf), by_fd ? SC_STATMOUNT_BY_FD : 0) != 0) {
		out->err = errno;
		return;
	}
	memcpy(&out->mask, buf + 8, 8);
	memcpy(&out->mnt_id, buf + 40, 8);
	memcpy(&out->attr, buf + 64, 8);
	if (out->mask & SC_STATMOUNT_MNT_ROOT)
		sm_string(buf, sizeof(buf), 104, out->root);
	if (out->mask & SC_STATMOUNT_MNT_POINT)
		sm_string(buf, sizeof(buf), 108, out->point);
}

/* STATMOUNT_BY_FD probe (UAPI.md): an fd that cannot be open gives EBADF if the kernel knows the
 * flag, EINVAL if not. */
static int have_by_fd(void)
{
	struct sm s;
	do_statmount(1, -1, 0, &s);
	return s.err == EBADF;
}

/* ---- small helpers ---- */

static uint64_t mnt_unique(int fd)
{
	struct statx stx;
	if (statx(fd, "", AT_EMPTY_PATH, SC_STATX_MNT_ID_UNIQUE, &stx) != 0 ||
	    !(stx.stx_mask & SC_STATX_MNT_ID_UNIQUE))
		return 0;
	return stx.stx_mnt_id;
}

/* fdinfo's mnt_id: the short id, the first field of /proc/self/mountinfo. */
static int old_mnt_id(int fd)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	FILE *f = fopen(path, "re");
	int id = -1;
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "mnt_id: %d", &id) == 1)
			break;
	fclose(f);
	return id;
}

static int in_mountinfo(int id)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[4096];
	int found = 0;
	if (!f)
		return -1;
	while (!found && fgets(line, sizeof(line), f))
		found = atoi(line) == id;
	fclose(f);
	return found;
}

static void fd_link(int fd, char *out)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, out, PATH_MAX - 1);
	out[n < 0 ? 0 : n] = 0;
}

/* Opens the file of fd again (through /proc/self/fd: same mount, same file) with flags. */
static int reopen(int fd, int flags)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return open(path, flags | O_CLOEXEC);
}

/* snprintf into a PATH_MAX buffer; a path that does not fit is a setup error, never truncated. */
__attribute__((format(printf, 2, 3))) static void pathf(char *out, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(out, PATH_MAX, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= PATH_MAX)
		E2E_DIE("path too long: %s", out);
}

static void must(int ok, const char *what)
{
	if (!ok)
		E2E_DIE("setup: %s: %s", what, strerror(errno));
}

static void path_of(char *out, const char *name)
{
	e2e_join(out, name);
}

static void mkdir_p(const char *path, mode_t mode)
{
	if (mkdir(path, mode) != 0 && errno != EEXIST)
		E2E_DIE("setup: mkdir %s: %s", path, strerror(errno));
}

static void write_all_at(int fd, const void *data, size_t len, off_t off, const char *what)
{
	if (pwrite(fd, data, len, off) != (ssize_t)len)
		E2E_DIE("setup: writing %s: %s", what, strerror(errno));
}

static void write_file_at(int dfd, const char *name, const unsigned char *data, size_t len, mode_t mode)
{
	int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		E2E_DIE("setup: creating %s: %s", name, strerror(errno));
	write_all_at(fd, data, len, 0, name);
	close(fd);
}

/* Printable pseudo-random bytes, different per seed. */
static unsigned char *make_data(uint64_t seed, size_t len)
{
	unsigned char *p = malloc(len);
	if (!p)
		E2E_DIE("setup: out of memory");
	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)('a' + e2e_mix(seed * 1000003 + i) % 26);
	return p;
}

/* ---- the fds a scenario holds ---- */

enum kind { K_FILE, K_DIR, K_OPATH, K_MOUNTFD, K_FIFO };
enum state { ATTACHED, UNMOUNTED, ANONYMOUS };
static const char *state_name[] = { "attached", "unmounted", "anonymous" };

struct rec {
	const char *label;
	int fd;
	enum kind kind;
	enum state state;
	int group;		 /* fds with the same group share one mount */
	char live[PATH_MAX];	 /* the same file through a live mount, "" if there is none */
	int via_dfd;		 /* or: a directory fd (e.g. the mount fd) and a path under it, -1 */
	const char *via_path;
	const char *root;	 /* the mount root statmount reports */
	char point[PATH_MAX];	 /* the mount point (attached only) */
	char link[PATH_MAX];	 /* readlink(/proc/self/fd/N) */
	const unsigned char *data; /* the content (K_FILE, K_OPATH), NULL if not checked */
	size_t len;
	unsigned long need_vfs; /* mount flags (ST_*) the scenario set */
	/* recorded before the dump */
	int fl, fdfl;
	off_t pos;
	struct stat st;
	struct statfs sfs;
	unsigned long vfs;
	uint64_t uniq;
	uint64_t sm_attr; /* statmount BY_FD mnt_attr (unmounted/attached, when BY_FD exists) */
};

static struct rec recs[8];
static int nrec;
static int by_fd;
static int scenario;
/* SCENARIOS.md's ns flavour (CRCLI_SCENARIO_NS=1, set by scenario-pidns): the program's mount
 * namespace dies with it, so its filesystems are made again at restore: the same inode, on a new
 * superblock whose device number need not be the old one. */
static int ns_flavour;
static char dir_src[PATH_MAX];

static struct rec *add(const char *label, int fd, enum kind kind, enum state state, int group)
{
	if (fd < 0)
		E2E_DIE("setup: opening %s: %s", label, strerror(errno));
	struct rec *r = &recs[nrec++];
	memset(r, 0, sizeof(*r));
	r->label = label;
	r->fd = fd;
	r->kind = kind;
	r->state = state;
	r->group = group;
	r->via_dfd = -1;
	r->root = "/";
	return r;
}

static struct rec *rec_by_label(const char *label)
{
	for (int i = 0; i < nrec; i++)
		if (strcmp(recs[i].label, label) == 0)
			return &recs[i];
	E2E_DIE("no fd labelled %s", label);
}

static int readable(const struct rec *r)
{
	return r->kind != K_OPATH && (r->fl & O_ACCMODE) != O_WRONLY;
}

static void snapshot(struct rec *r)
{
	r->fl = fcntl(r->fd, F_GETFL);
	r->fdfl = fcntl(r->fd, F_GETFD);
	r->pos = r->kind == K_FILE ? lseek(r->fd, 0, SEEK_CUR) : 0;
	struct statvfs sv;
	if (fstat(r->fd, &r->st) != 0 || fstatfs(r->fd, &r->sfs) != 0 || fstatvfs(r->fd, &sv) != 0)
		E2E_DIE("setup: fstat of %s: %s", r->label, strerror(errno));
	r->vfs = sv.f_flag & VFS_MASK;
	r->uniq = mnt_unique(r->fd);
	if (by_fd && r->state != ANONYMOUS) {
		struct sm s;
		do_statmount(1, r->fd, 0, &s);
		r->sm_attr = s.attr;
	}
}

/* Reads the whole content of the file of r (through the fd, or a reopen for O_PATH/O_WRONLY). */
static ssize_t read_content(const struct rec *r, unsigned char *buf, size_t cap)
{
	int fd = readable(r) ? r->fd : reopen(r->fd, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = pread(fd, buf, cap, 0);
	if (fd != r->fd)
		close(fd);
	return n;
}

/* Non-mutating checks of one fd. */
static void check_rec(struct rec *r)
{
	const char *l = r->label;
	int fl = fcntl(r->fd, F_GETFL);
	E2E_CHECK(fl == r->fl, "%s: open flags %#o, want %#o", l, fl, r->fl);
	int fdfl = fcntl(r->fd, F_GETFD);
	E2E_CHECK(fdfl == r->fdfl, "%s: fd flags %#x, want %#x", l, fdfl, r->fdfl);
	if (r->kind == K_FILE) {
		off_t pos = lseek(r->fd, 0, SEEK_CUR);
		E2E_CHECK(pos == r->pos, "%s: position %lld, want %lld", l, (long long)pos, (long long)r->pos);
	}
	struct stat st;
	if (!E2E_CHECK(fstat(r->fd, &st) == 0, "%s: fstat: %s", l, strerror(errno)))
		return;
	E2E_CHECK(st.st_mode == r->st.st_mode && st.st_uid == r->st.st_uid && st.st_gid == r->st.st_gid &&
			  st.st_size == r->st.st_size && st.st_nlink == r->st.st_nlink &&
			  (S_ISDIR(st.st_mode) || S_ISFIFO(st.st_mode) || (st.st_mtim.tv_sec == r->st.st_mtim.tv_sec &&
						   st.st_mtim.tv_nsec == r->st.st_mtim.tv_nsec)),
		  "%s: metadata mode %o uid %u gid %u size %lld nlink %lu mtime %lld.%09ld, want mode %o uid %u "
		  "gid %u size %lld nlink %lu mtime %lld.%09ld",
		  l, st.st_mode, st.st_uid, st.st_gid, (long long)st.st_size, (unsigned long)st.st_nlink,
		  (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, r->st.st_mode, r->st.st_uid, r->st.st_gid,
		  (long long)r->st.st_size, (unsigned long)r->st.st_nlink, (long long)r->st.st_mtim.tv_sec,
		  r->st.st_mtim.tv_nsec);
	if (r->live[0]) {
		struct stat lst;
		E2E_CHECK((ns_flavour || st.st_dev == r->st.st_dev) && st.st_ino == r->st.st_ino,
			  "%s: not the same file as before (dev %#lx ino %lu, want dev %#lx ino %lu)", l,
			  (unsigned long)st.st_dev, (unsigned long)st.st_ino, (unsigned long)r->st.st_dev,
			  (unsigned long)r->st.st_ino);
		E2E_CHECK(stat(r->live, &lst) == 0 && lst.st_ino == st.st_ino && lst.st_dev == st.st_dev,
			  "%s: not the same file as %s through the live mount", l, r->live);
	}
	struct statfs sfs;
	if (E2E_CHECK(fstatfs(r->fd, &sfs) == 0, "%s: fstatfs: %s", l, strerror(errno))) {
		E2E_CHECK(sfs.f_type == r->sfs.f_type, "%s: filesystem type %#lx, want %#lx", l,
			  (unsigned long)sfs.f_type, (unsigned long)r->sfs.f_type);
		E2E_CHECK(sfs.f_blocks == r->sfs.f_blocks && sfs.f_bsize == r->sfs.f_bsize,
			  "%s: filesystem size %lu blocks of %ld, want %lu of %ld", l, (unsigned long)sfs.f_blocks,
			  (long)sfs.f_bsize, (unsigned long)r->sfs.f_blocks, (long)r->sfs.f_bsize);
	}
	struct statvfs sv;
	if (E2E_CHECK(fstatvfs(r->fd, &sv) == 0, "%s: fstatvfs: %s", l, strerror(errno))) {
		unsigned long vfs = sv.f_flag & VFS_MASK;
		E2E_CHECK(vfs == r->vfs && (vfs & r->need_vfs) == r->need_vfs,
			  "%s: mount flags %#lx, want %#lx (the scenario set %#lx)", l, vfs, r->vfs, r->need_vfs);
	}
	if (r->data) {
		unsigned char *buf = malloc(r->len + 1);
		ssize_t n = buf ? read_content(r, buf, r->len) : -1; /* the size is checked above */
		if (E2E_CHECK(n == (ssize_t)r->len, "%s: content is %zd bytes, want %zu", l, n, r->len)) {
			for (size_t i = 0; i < r->len; i++)
				if (!E2E_CHECK(buf[i] == r->data[i], "%s: content differs at byte %zu", l, i))
					break;
		}
		free(buf);
	}

	/* The mount state. */
	int old = old_mnt_id(r->fd);
	int listed = in_mountinfo(old);
	E2E_CHECK(listed == (r->state == ATTACHED), "%s: mount %d is %s /proc/self/mountinfo, want %s", l, old,
		  listed ? "in" : "not in", state_name[r->state]);
	uint64_t uniq = mnt_unique(r->fd);
	E2E_CHECK(uniq != 0, "%s: statx gave no unique mount id", l);
	struct sm s;
	do_statmount(0, -1, uniq, &s);
	if (r->state == ATTACHED) {
		E2E_CHECK(s.err == 0 && strcmp(s.root, r->root) == 0 && strcmp(s.point, r->point) == 0,
			  "%s: statmount by id of mount %llu: %s, root %s, point %s; want attached with mount root %s "
			  "at %s",
			  l, (unsigned long long)uniq, s.err ? strerror(s.err) : "found", s.root, s.point, r->root,
			  r->point);
		/* In the ns flavour the live mount was made again: the one now at its mount point. */
		uint64_t live = r->uniq;
		if (ns_flavour) {
			int at = open(r->point, O_PATH | O_CLOEXEC);
			live = at >= 0 ? mnt_unique(at) : 0;
			if (at >= 0)
				close(at);
		}
		E2E_CHECK(uniq == live, "%s: on mount %llu, want the live mount %llu", l,
			  (unsigned long long)uniq, (unsigned long long)live);
	} else {
		E2E_CHECK(s.err == ENOENT, "%s: statmount by id of mount %llu: %s, want ENOENT (%s)", l,
			  (unsigned long long)uniq, s.err ? strerror(s.err) : "found", state_name[r->state]);
	}
	if (by_fd) {
		do_statmount(1, r->fd, 0, &s);
		switch (r->state) {
		case ATTACHED:
			E2E_CHECK(s.err == 0 && (s.mask & SC_STATMOUNT_MNT_POINT),
				  "%s: statmount BY_FD: %s, mask %#llx; want attached (MNT_POINT)", l,
				  s.err ? strerror(s.err) : "ok", (unsigned long long)s.mask);
			break;
		case UNMOUNTED:
			E2E_CHECK(s.err == 0 && !(s.mask & SC_STATMOUNT_MNT_POINT),
				  "%s: statmount BY_FD: %s, mask %#llx; want unmounted (no MNT_POINT)", l,
				  s.err ? strerror(s.err) : "ok", (unsigned long long)s.mask);
			E2E_CHECK(s.err != 0 || strcmp(s.root, r->root) == 0, "%s: mount root %s, want %s", l, s.root,
				  r->root);
			E2E_CHECK(s.err != 0 || s.attr == r->sm_attr, "%s: statmount mnt_attr %#llx, want %#llx", l,
				  (unsigned long long)s.attr, (unsigned long long)r->sm_attr);
			break;
		case ANONYMOUS:
			E2E_CHECK(s.err == ENOENT, "%s: statmount BY_FD: %s; want ENOENT (anonymous mount)", l,
				  s.err ? strerror(s.err) : "answered");
			break;
		}
	}
	char link[PATH_MAX];
	fd_link(r->fd, link);
	if (r->link[0] == '*') {
		/* "*SUFFIX": any path ending in SUFFIX (an O_TMPFILE shows as "/#INO (deleted)"). */
		size_t n = strlen(link), m = strlen(r->link + 1);
		E2E_CHECK(n >= m && strcmp(link + n - m, r->link + 1) == 0, "%s: path %s, want one ending in %s", l,
			  link, r->link + 1);
	} else {
		E2E_CHECK(strcmp(link, r->link) == 0, "%s: path %s, want %s", l, link, r->link);
	}
}

/* Shared mounts stay shared, different ones stay different. */
static void check_groups(void)
{
	for (int i = 0; i < nrec; i++)
		for (int j = i + 1; j < nrec; j++) {
			uint64_t a = mnt_unique(recs[i].fd), b = mnt_unique(recs[j].fd);
			if (recs[i].group == recs[j].group)
				E2E_CHECK(a == b, "%s and %s are on different mounts (%llu, %llu); they shared one mount",
					  recs[i].label, recs[j].label, (unsigned long long)a, (unsigned long long)b);
			else
				E2E_CHECK(a != b, "%s and %s share mount %llu; they were on different mounts",
					  recs[i].label, recs[j].label, (unsigned long long)a);
		}
}

/* Reads len bytes at off of path (or of via_dfd/via_path) into buf; -1 on error. */
static ssize_t read_other(const struct rec *r, unsigned char *buf, size_t len, off_t off)
{
	int fd = r->live[0] ? open(r->live, O_RDONLY | O_CLOEXEC)
		 : r->via_dfd >= 0 ? openat(r->via_dfd, r->via_path, O_RDONLY | O_CLOEXEC)
				   : reopen(r->fd, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = pread(fd, buf, len, off);
	close(fd);
	return n;
}

/* Writes: through the fd (visible elsewhere), or elsewhere (visible through the fd). */
static void check_writes(struct rec *r)
{
	const char *l = r->label;
	char marker[64];
	int mlen = snprintf(marker, sizeof(marker), "+written through %s+", l);
	unsigned char back[64];
	if (r->need_vfs & ST_RDONLY) {
		int fd = reopen(r->fd, O_WRONLY);
		E2E_CHECK(fd < 0 && errno == EROFS, "%s: opening it for writing gave %s, want EROFS (read-only mount)",
			  l, fd < 0 ? strerror(errno) : "success");
		if (fd >= 0)
			close(fd);
	}
	if (r->kind == K_FILE && (r->fl & O_ACCMODE) != O_RDONLY) {
		struct stat st;
		fstat(r->fd, &st);
		off_t before = lseek(r->fd, 0, SEEK_CUR);
		E2E_CHECK(pwrite(r->fd, marker, mlen, st.st_size) == mlen, "%s: write: %s", l, strerror(errno));
		memset(back, 0, sizeof(back));
		ssize_t n = read_other(r, back, mlen, st.st_size);
		E2E_CHECK(n == mlen && memcmp(back, marker, mlen) == 0,
			  "%s: a write through the fd is not visible through %s", l,
			  r->live[0] ? r->live : r->via_dfd >= 0 ? r->via_path : "the file (reopened)");
		E2E_CHECK(lseek(r->fd, 0, SEEK_CUR) == before, "%s: pwrite moved the position", l);
	} else if ((r->kind == K_FILE || r->kind == K_OPATH) && r->live[0]) {
		int fd = open(r->live, O_WRONLY | O_APPEND | O_CLOEXEC);
		struct stat st;
		fstat(r->fd, &st);
		mlen = snprintf(marker, sizeof(marker), "+written through the live mount+");
		E2E_CHECK(fd >= 0 && write(fd, marker, mlen) == mlen, "%s: writing %s: %s", l, r->live,
			  strerror(errno));
		if (fd >= 0)
			close(fd);
		int rfd = readable(r) ? r->fd : reopen(r->fd, O_RDONLY);
		memset(back, 0, sizeof(back));
		ssize_t n = rfd >= 0 ? pread(rfd, back, mlen, st.st_size) : -1;
		E2E_CHECK(n == mlen && memcmp(back, marker, mlen) == 0,
			  "%s: a write through the live mount %s is not visible through the fd", l, r->live);
		if (rfd >= 0 && rfd != r->fd)
			close(rfd);
	} else if (r->kind == K_DIR) {
		/* A file created through the directory fd appears in the live filesystem. */
		int fd = openat(r->fd, "created-through-dirfd", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		E2E_CHECK(fd >= 0 && write(fd, marker, mlen) == mlen, "%s: creating a file through it: %s", l,
			  strerror(errno));
		if (fd >= 0)
			close(fd);
		char path[PATH_MAX];
		pathf(path, "%s/created-through-dirfd", dir_src);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		memset(back, 0, sizeof(back));
		E2E_CHECK(fd >= 0 && read(fd, back, mlen) == mlen && memcmp(back, marker, mlen) == 0,
			  "%s: a write through a file created through it is not visible at %s", l, path);
		if (fd >= 0)
			close(fd);
		unlinkat(r->fd, "created-through-dirfd", 0);
	}
}

/* ---- corruptions: each mimics a restore bug ---- */

/* Puts newfd at r's number with r's position and flags (as a restore would). */
static void replace_fd(struct rec *r, int newfd)
{
	if (newfd < 0)
		E2E_DIE("corrupting %s: %s", r->label, strerror(errno));
	if (r->kind == K_FILE)
		lseek(newfd, r->pos, SEEK_SET);
	if (dup3(newfd, r->fd, (r->fdfl & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0)
		E2E_DIE("corrupting %s: dup3: %s", r->label, strerror(errno));
	close(newfd);
}

static int open_flags(const struct rec *r)
{
	return r->fl & (O_ACCMODE | O_APPEND | O_PATH | O_DIRECTORY | O_NONBLOCK);
}

/* A second clone of DIR/src (what a restore that clones once per fd would make). */
static int clone_src(void)
{
	int m = sys_open_tree(AT_FDCWD, dir_src, SC_OPEN_TREE_CLONE | O_CLOEXEC);
	if (m < 0)
		E2E_DIE("corrupting: open_tree %s: %s", dir_src, strerror(errno));
	return m;
}

/* r's file (path rel under DIR/src) through a new clone of DIR/src, left unmounted. */
static void corrupt_reclone(struct rec *r, const char *rel)
{
	int m = clone_src();
	replace_fd(r, openat(m, rel, open_flags(r) | O_CLOEXEC));
	close(m);
}

/* r's content copied into a fresh tmpfs instance, the fd reopened there, the mount left unmounted. */
static void corrupt_copy(struct rec *r)
{
	int fs = sys_fsopen("tmpfs", 0);
	if (fs < 0 || sys_fsconfig(fs, SC_FSCONFIG_CMD_CREATE, NULL, NULL, 0) != 0)
		E2E_DIE("corrupting: a new tmpfs: %s", strerror(errno));
	int m = sys_fsmount(fs, SC_FSMOUNT_CLOEXEC, 0);
	close(fs);
	if (m < 0)
		E2E_DIE("corrupting: fsmount: %s", strerror(errno));
	if (r->data)
		write_file_at(m, "file", r->data, r->len, r->st.st_mode & 07777);
	replace_fd(r, openat(m, "file", open_flags(r) | O_CREAT | O_CLOEXEC, 0644));
	close(m);
}

/* The generic switches; scenario-specific ones are handled by the scenarios. */
static void corrupt_generic(struct rec *r)
{
	if (e2e_corrupt("data")) {
		int fd = reopen(r->fd, O_WRONLY);
		unsigned char c = r->data[0] == 'Z' ? 'Y' : 'Z';
		struct timespec ts[2] = { { 0, UTIME_OMIT }, r->st.st_mtim };
		if (fd < 0 || pwrite(fd, &c, 1, 0) != 1 || futimens(fd, ts) != 0)
			E2E_DIE("corrupting data: %s", strerror(errno));
		close(fd);
	}
	if (e2e_corrupt("pos"))
		lseek(r->fd, 1, SEEK_CUR);
	if (e2e_corrupt("flags"))
		fcntl(r->fd, F_SETFL, r->fl ^ O_NONBLOCK);
	if (e2e_corrupt("write"))
		corrupt_copy(r);
}

/* ---- the scenarios ---- */

static char path_buf[8][PATH_MAX];

/* DIR/src: a live tmpfs with "file" (and more, per scenario). */
static void live_tmpfs(void)
{
	path_of(dir_src, "src");
	mkdir_p(dir_src, 0755);
	must(mount("scenario-src", dir_src, "tmpfs", 0, "size=16m,mode=0755") == 0, "mounting tmpfs on DIR/src");
}

static void bind_at(const char *src, const char *dst, int file)
{
	if (file) {
		int fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		must(fd >= 0, "creating the file bind target");
		close(fd);
	} else {
		mkdir_p(dst, 0755);
	}
	must(mount(src, dst, NULL, MS_BIND, NULL) == 0, "bind mount");
}

static void detach(const char *path, int file)
{
	must(umount2(path, MNT_DETACH) == 0, "umount2(MNT_DETACH)");
	must((file ? unlink(path) : rmdir(path)) == 0, "removing the mountpoint");
}

#define LEN_A 4133
#define LEN_B 777

static const unsigned char *data_a, *data_b, *data_c;

/* DIR/src with "file" (data_a), "sub/file" (data_b), "a" (data_a), "b" (data_b), "c" (data_c). */
static void fill_src(void)
{
	data_a = make_data(scenario * 10 + 1, LEN_A);
	data_b = make_data(scenario * 10 + 2, LEN_B);
	data_c = make_data(scenario * 10 + 3, LEN_B);
	int d = open(dir_src, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	must(d >= 0, "opening DIR/src");
	write_file_at(d, "file", data_a, LEN_A, 0644);
	must(mkdirat(d, "sub", 0755) == 0, "mkdir DIR/src/sub");
	write_file_at(d, "sub/file", data_b, LEN_B, 0640);
	write_file_at(d, "a", data_a, LEN_A, 0644);
	write_file_at(d, "b", data_b, LEN_B, 0644);
	write_file_at(d, "c", data_c, LEN_B, 0644);
	close(d);
}

static void set_content(struct rec *r, const unsigned char *data, size_t len)
{
	r->data = data;
	r->len = len;
}

static void set_live(struct rec *r, const char *rel)
{
	pathf(r->live, "%s/%s", dir_src, rel);
}

static void set_attached(struct rec *r)
{
	pathf(r->point, "%s", dir_src);
	fd_link(r->fd, r->link); /* checked against the live path below */
}

static void s1_setup(void)
{
	live_tmpfs();
	fill_src();
	char p[PATH_MAX];
	pathf(p, "%s/file", dir_src);
	struct rec *r = add("file", open(p, O_RDWR | O_CLOEXEC), K_FILE, ATTACHED, 1);
	lseek(r->fd, 5, SEEK_SET);
	set_content(r, data_a, LEN_A);
	set_live(r, "file");
	set_attached(r);
	pathf(r->link, "%s", p);
}

/* A bind of DIR/src[/sub] at DIR/<name>, opened, then detached. Returns the bind's path. */
static char *s_bind(const char *name, const char *from_sub)
{
	char *b = path_buf[nrec];
	path_of(b, name);
	char src[PATH_MAX];
	pathf(src, "%s%s", dir_src, from_sub);
	bind_at(src, b, 0);
	return b;
}

static int open_in(const char *dir, const char *rel, int flags)
{
	char p[PATH_MAX];
	pathf(p, "%s/%s", dir, rel);
	return open(p, flags | O_CLOEXEC, 0644);
}

static void s2_setup(void)
{
	live_tmpfs();
	fill_src();
	char *b = s_bind("bind", "");
	struct rec *r = add("file", open_in(b, "file", O_RDWR | O_APPEND), K_FILE, UNMOUNTED, 1);
	lseek(r->fd, 11, SEEK_SET);
	set_content(r, data_a, LEN_A);
	set_live(r, "file");
	pathf(r->link, "/file");
	detach(b, 0);
}

#define S3_SIZE (1 << 20)
#define S3_HOLE_DATA (256 << 10)
static off_t s3_data_after_hole, s3_hole;
static unsigned char *s3_tail;

static void s3_setup(void)
{
	char lost[PATH_MAX];
	path_of(lost, "lost");
	mkdir_p(lost, 0755);
	must(mount("scenario-lost", lost, "tmpfs", MS_NOSUID, "size=4m,mode=0711") == 0, "mounting tmpfs on DIR/lost");
	data_a = make_data(31, LEN_A);
	s3_tail = make_data(32, 4096);
	struct rec *r = add("file", open_in(lost, "file", O_RDWR | O_CREAT), K_FILE, UNMOUNTED, 1);
	write_all_at(r->fd, data_a, LEN_A, 0, "DIR/lost/file");
	write_all_at(r->fd, s3_tail, 4096, S3_HOLE_DATA, "DIR/lost/file");
	must(ftruncate(r->fd, S3_SIZE) == 0, "ftruncate");
	must(fchmod(r->fd, 0640) == 0 && fchown(r->fd, 1234, 5678) == 0, "fchmod/fchown");
	must(fsetxattr(r->fd, "user.crcli", "lost superblock", 15, 0) == 0, "fsetxattr user.crcli");
	/* Another file that no fd reaches: crcli need not keep it. */
	int other = open_in(lost, "unreachable", O_WRONLY | O_CREAT);
	must(other >= 0, "creating DIR/lost/unreachable");
	close(other);
	struct timespec ts[2] = { { 1000000000, 123456789 }, { 1111111111, 987654321 } };
	must(futimens(r->fd, ts) == 0, "futimens");
	lseek(r->fd, 42, SEEK_SET);
	set_content(r, data_a, LEN_A);
	r->need_vfs = ST_NOSUID;
	pathf(r->link, "/file");
	s3_hole = lseek(r->fd, 0, SEEK_HOLE);
	s3_data_after_hole = lseek(r->fd, s3_hole, SEEK_DATA);
	lseek(r->fd, 42, SEEK_SET);
	detach(lost, 0);
}

static void s3_check(void)
{
	struct rec *r = rec_by_label("file");
	off_t pos = lseek(r->fd, 0, SEEK_CUR);
	off_t hole = lseek(r->fd, 0, SEEK_HOLE);
	off_t data = lseek(r->fd, hole, SEEK_DATA);
	E2E_CHECK(hole == s3_hole && data == s3_data_after_hole,
		  "file: holes: first hole at %lld, data again at %lld; want %lld and %lld", (long long)hole,
		  (long long)data, (long long)s3_hole, (long long)s3_data_after_hole);
	lseek(r->fd, pos, SEEK_SET);
	unsigned char buf[4096];
	E2E_CHECK(pread(r->fd, buf, 4096, S3_HOLE_DATA) == 4096 && memcmp(buf, s3_tail, 4096) == 0,
		  "file: the data after the hole differs");
	char x[64] = { 0 };
	ssize_t n = fgetxattr(r->fd, "user.crcli", x, sizeof(x) - 1);
	E2E_CHECK(n == 15 && memcmp(x, "lost superblock", 15) == 0, "file: xattr user.crcli is %s, want %s",
		  n < 0 ? strerror(errno) : x, "lost superblock");
	E2E_CHECK(r->sfs.f_type == SC_TMPFS_MAGIC, "file: not on a tmpfs");
}

static void s4_setup(void)
{
	live_tmpfs();
	fill_src();
	char *b = s_bind("bind", "/sub");
	struct rec *r = add("file", open_in(b, "file", O_RDONLY), K_FILE, UNMOUNTED, 1);
	lseek(r->fd, 3, SEEK_SET);
	set_content(r, data_b, LEN_B);
	set_live(r, "sub/file");
	r->root = "/sub";
	pathf(r->link, "/file");
	detach(b, 0);
}

static void s5_setup(void)
{
	live_tmpfs();
	fill_src();
	char *b = s_bind("bind", "");
	struct rec *d = add("dirfd", open(b, O_RDONLY | O_DIRECTORY | O_CLOEXEC), K_DIR, UNMOUNTED, 1);
	pathf(d->link, "/");
	pathf(d->live, "%s", dir_src);
	struct rec *p = add("pathfd", open_in(b, "file", O_PATH), K_OPATH, UNMOUNTED, 1);
	set_content(p, data_a, LEN_A);
	set_live(p, "file");
	pathf(p->link, "/file");
	detach(b, 0);
}

static void s5_check(void)
{
	struct rec *d = rec_by_label("dirfd"), *p = rec_by_label("pathfd");
	int fd = openat(d->fd, "file", O_RDONLY | O_CLOEXEC);
	if (!E2E_CHECK(fd >= 0, "openat(dirfd, file): %s", strerror(errno)))
		return;
	struct stat st;
	unsigned char buf[LEN_A + 1];
	struct stat pst;
	E2E_CHECK(fstat(fd, &st) == 0 && fstat(p->fd, &pst) == 0 && st.st_ino == pst.st_ino &&
			  st.st_dev == pst.st_dev && st.st_ino == p->st.st_ino &&
			  (ns_flavour || st.st_dev == p->st.st_dev),
		  "openat(dirfd, file) is not the file of pathfd");
	E2E_CHECK(pread(fd, buf, sizeof(buf), 0) == LEN_A && memcmp(buf, data_a, LEN_A) == 0,
		  "openat(dirfd, file): content differs");
	E2E_CHECK(mnt_unique(fd) == mnt_unique(d->fd), "openat(dirfd, file) is on another mount than dirfd");
	close(fd);
}

static void s6_setup(void)
{
	live_tmpfs();
	fill_src();
	char *b = s_bind("bind", "");
	struct sc_mount_attr attr = { .attr_set = SC_MOUNT_ATTR_RDONLY | SC_MOUNT_ATTR_NOSUID };
	must(sys_mount_setattr(AT_FDCWD, b, 0, &attr) == 0, "mount_setattr ro,nosuid");
	struct rec *r = add("file", open_in(b, "file", O_RDONLY), K_FILE, UNMOUNTED, 1);
	lseek(r->fd, 1000, SEEK_SET);
	set_content(r, data_a, LEN_A);
	set_live(r, "file");
	r->need_vfs = ST_RDONLY | ST_NOSUID;
	pathf(r->link, "/file");
	detach(b, 0);
}

static int s7_mfd;
static const char *s7_file = "file"; /* the file opened through the mount fd (label = name) */

static void s7_setup(void)
{
	live_tmpfs();
	fill_src();
	s7_mfd = sys_open_tree(AT_FDCWD, dir_src, SC_OPEN_TREE_CLONE | O_CLOEXEC);
	struct rec *m = add("mountfd", s7_mfd, K_MOUNTFD, ANONYMOUS, 1);
	pathf(m->link, "/");
	pathf(m->live, "%s", dir_src);
	struct rec *r = add("file", openat(s7_mfd, "file", O_RDWR | O_CLOEXEC), K_FILE, ANONYMOUS, 1);
	lseek(r->fd, 7, SEEK_SET);
	set_content(r, data_a, LEN_A);
	set_live(r, "file");
	pathf(r->link, "/file");
}

/* After the writes: the mount fd still opens files, and move_mount attaches it. */
static void s7_mount_fd_works(void)
{
	struct rec *m = rec_by_label("mountfd");
	int fd = openat(m->fd, s7_file, O_RDONLY | O_CLOEXEC);
	struct stat st, lst;
	E2E_CHECK(fd >= 0 && fstat(fd, &st) == 0 && stat(rec_by_label(s7_file)->live, &lst) == 0 &&
			  st.st_ino == lst.st_ino,
		  "mount fd: openat(mountfd, %s) does not give the live file: %s", s7_file, strerror(errno));
	if (fd >= 0)
		close(fd);
	char at[PATH_MAX], p[PATH_MAX];
	path_of(at, "attach");
	mkdir_p(at, 0755);
	if (!E2E_CHECK(sys_move_mount(m->fd, "", AT_FDCWD, at, SC_MOVE_MOUNT_F_EMPTY_PATH) == 0,
		       "mount fd: move_mount to %s: %s", at, strerror(errno))) {
		rmdir(at);
		return;
	}
	pathf(p, "%s/%s", at, s7_file);
	E2E_CHECK(stat(p, &st) == 0 && st.st_ino == lst.st_ino, "mount fd: %s is not the live file after move_mount", p);
	E2E_CHECK(in_mountinfo(old_mnt_id(m->fd)) == 1, "mount fd: not in /proc/self/mountinfo after move_mount");
	if (by_fd) {
		struct sm s;
		do_statmount(1, m->fd, 0, &s);
		E2E_CHECK(s.err == 0 && (s.mask & SC_STATMOUNT_MNT_POINT) && strcmp(s.point, at) == 0,
			  "mount fd: statmount BY_FD after move_mount: %s, point %s; want %s",
			  s.err ? strerror(s.err) : "ok", s.point, at);
	}
	E2E_CHECK(umount2(at, MNT_DETACH) == 0, "mount fd: umount2 %s: %s", at, strerror(errno));
	E2E_CHECK(rmdir(at) == 0, "mount fd: rmdir %s: %s", at, strerror(errno));
}

/* Scenario 8: the tree inside the anonymous tmpfs. */
struct ent {
	const char *path;
	struct stat st;
	const unsigned char *data;
	size_t len;
	const char *target;
};
static struct ent s8_ents[] = {
	{ .path = "." },	  { .path = "file" },	     { .path = "hard" },  { .path = "dir" },
	{ .path = "dir/sub" }, { .path = "dir/sub/nested" }, { .path = "link", .target = "dir/sub/nested" },
	{ .path = "empty" },   { .path = "sparse" },
};
#define S8_N (sizeof(s8_ents) / sizeof(s8_ents[0]))
static int s8_mfd;
static off_t s8_hole, s8_data;
static unsigned long s8_blocks;

static void s8_setup(void)
{
	int fs = sys_fsopen("tmpfs", 0);
	must(fs >= 0, "fsopen tmpfs");
	must(sys_fsconfig(fs, SC_FSCONFIG_SET_STRING, "size", "8m", 0) == 0 &&
		     sys_fsconfig(fs, SC_FSCONFIG_SET_STRING, "mode", "0750", 0) == 0 &&
		     sys_fsconfig(fs, SC_FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0,
	     "fsconfig");
	s8_mfd = sys_fsmount(fs, SC_FSMOUNT_CLOEXEC, SC_MOUNT_ATTR_NODEV | SC_MOUNT_ATTR_NOEXEC);
	must(s8_mfd >= 0, "fsmount");
	close(fs);
	data_a = make_data(81, LEN_A);
	data_b = make_data(82, LEN_B);
	int m = s8_mfd;
	write_file_at(m, "file", data_a, LEN_A, 0644);
	must(linkat(m, "file", m, "hard", 0) == 0, "link hard");
	must(mkdirat(m, "dir", 0755) == 0 && mkdirat(m, "dir/sub", 0700) == 0 && mkdirat(m, "empty", 0710) == 0,
	     "mkdir");
	write_file_at(m, "dir/sub/nested", data_b, LEN_B, 0600);
	must(fchownat(m, "dir/sub", 1000, 1000, 0) == 0 && fchownat(m, "empty", 1000, 2000, 0) == 0, "chown");
	must(symlinkat("dir/sub/nested", m, "link") == 0, "symlink");
	int sp = openat(m, "sparse", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	must(sp >= 0, "sparse");
	write_all_at(sp, data_b, LEN_B, 0, "sparse");
	write_all_at(sp, data_b, LEN_B, 512 << 10, "sparse");
	must(ftruncate(sp, 1 << 20) == 0, "ftruncate sparse");
	s8_hole = lseek(sp, 0, SEEK_HOLE);
	s8_data = lseek(sp, s8_hole, SEEK_DATA);
	close(sp);
	int nested = openat(m, "dir/sub/nested", O_RDONLY | O_CLOEXEC);
	must(nested >= 0 && fsetxattr(nested, "user.crcli", "anonymous", 9, 0) == 0, "fsetxattr nested");
	close(nested);
	struct timespec ts[2] = { { 1200000000, 5 }, { 1300000000, 500000000 } };
	must(utimensat(m, "dir/sub/nested", ts, 0) == 0, "utimensat nested");
	ts[1].tv_sec = 1310000000;
	must(utimensat(m, "link", ts, AT_SYMLINK_NOFOLLOW) == 0, "utimensat link");
	ts[1].tv_sec = 1320000000;
	must(utimensat(m, "dir/sub", ts, 0) == 0, "utimensat dir/sub");
	ts[1].tv_sec = 1330000000;
	must(utimensat(m, "dir", ts, 0) == 0, "utimensat dir");
	struct rec *r = add("file", openat(m, "file", O_RDWR | O_APPEND | O_CLOEXEC), K_FILE, ANONYMOUS, 1);
	lseek(r->fd, 100, SEEK_SET);
	set_content(r, data_a, LEN_A);
	r->via_dfd = m;
	r->via_path = "file";
	r->need_vfs = ST_NODEV | ST_NOEXEC;
	pathf(r->link, "/file");
	ts[1].tv_sec = 1340000000;
	must(utimensat(m, "", ts, AT_EMPTY_PATH) == 0 || utimensat(m, ".", ts, 0) == 0, "utimensat root");
	struct rec *mr = add("mountfd", m, K_MOUNTFD, ANONYMOUS, 1);
	mr->need_vfs = ST_NODEV | ST_NOEXEC;
	pathf(mr->link, "/");
	for (size_t i = 0; i < S8_N; i++) {
		struct ent *e = &s8_ents[i];
		must(fstatat(m, e->path, &e->st, AT_SYMLINK_NOFOLLOW) == 0, e->path);
		if (strcmp(e->path, "file") == 0 || strcmp(e->path, "hard") == 0) {
			e->data = data_a;
			e->len = LEN_A;
		} else if (strcmp(e->path, "dir/sub/nested") == 0) {
			e->data = data_b;
			e->len = LEN_B;
		}
	}
	struct statfs sfs;
	must(fstatfs(m, &sfs) == 0, "fstatfs");
	s8_blocks = sfs.f_blocks;
}

static int count_entries(int m, const char *path)
{
	int fd = openat(m, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	int n = 0;
	if (!d)
		return -1;
	for (struct dirent *de; (de = readdir(d));)
		n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
	closedir(d);
	return n;
}

static void s8_check(void)
{
	int m = rec_by_label("mountfd")->fd;
	for (size_t i = 0; i < S8_N; i++) {
		struct ent *e = &s8_ents[i];
		struct stat st;
		if (!E2E_CHECK(fstatat(m, e->path, &st, AT_SYMLINK_NOFOLLOW) == 0, "tree: %s: %s", e->path,
			       strerror(errno)))
			continue;
		E2E_CHECK(st.st_mode == e->st.st_mode && st.st_uid == e->st.st_uid && st.st_gid == e->st.st_gid &&
				  st.st_size == e->st.st_size && st.st_nlink == e->st.st_nlink &&
				  st.st_mtim.tv_sec == e->st.st_mtim.tv_sec && st.st_mtim.tv_nsec == e->st.st_mtim.tv_nsec,
			  "tree: %s: mode %o uid %u gid %u size %lld nlink %lu mtime %lld.%09ld, want mode %o uid %u gid "
			  "%u size %lld nlink %lu mtime %lld.%09ld",
			  e->path, st.st_mode, st.st_uid, st.st_gid, (long long)st.st_size, (unsigned long)st.st_nlink,
			  (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, e->st.st_mode, e->st.st_uid, e->st.st_gid,
			  (long long)e->st.st_size, (unsigned long)e->st.st_nlink, (long long)e->st.st_mtim.tv_sec,
			  e->st.st_mtim.tv_nsec);
		if (e->data) {
			unsigned char buf[LEN_A + 1];
			int fd = openat(m, e->path, O_RDONLY | O_CLOEXEC);
			ssize_t n = fd >= 0 ? pread(fd, buf, sizeof(buf), 0) : -1;
			E2E_CHECK(n == (ssize_t)e->len && memcmp(buf, e->data, e->len) == 0, "tree: %s: content differs",
				  e->path);
			if (fd >= 0)
				close(fd);
		}
		if (e->target) {
			char t[PATH_MAX];
			ssize_t n = readlinkat(m, e->path, t, sizeof(t) - 1);
			t[n < 0 ? 0 : n] = 0;
			E2E_CHECK(strcmp(t, e->target) == 0, "tree: %s: symlink to %s, want %s", e->path, t, e->target);
		}
	}
	struct stat a, b;
	E2E_CHECK(fstatat(m, "file", &a, 0) == 0 && fstatat(m, "hard", &b, 0) == 0 && a.st_ino == b.st_ino,
		  "tree: hard and file are not one inode (hard link lost)");
	struct stat held;
	E2E_CHECK(fstat(rec_by_label("file")->fd, &held) == 0 && held.st_ino == a.st_ino && held.st_dev == a.st_dev,
		  "tree: the file fd is not the file in the tree of the mount fd");
	int sp = openat(m, "sparse", O_RDONLY | O_CLOEXEC);
	off_t hole = sp >= 0 ? lseek(sp, 0, SEEK_HOLE) : -1;
	off_t data = sp >= 0 ? lseek(sp, hole, SEEK_DATA) : -1;
	E2E_CHECK(hole == s8_hole && data == s8_data, "tree: sparse: hole at %lld, data at %lld; want %lld, %lld",
		  (long long)hole, (long long)data, (long long)s8_hole, (long long)s8_data);
	if (sp >= 0)
		close(sp);
	char x[32] = { 0 };
	int nested = openat(m, "dir/sub/nested", O_RDONLY | O_CLOEXEC);
	ssize_t n = nested >= 0 ? fgetxattr(nested, "user.crcli", x, sizeof(x) - 1) : -1;
	E2E_CHECK(n == 9 && memcmp(x, "anonymous", 9) == 0, "tree: dir/sub/nested: xattr user.crcli is %s",
		  n < 0 ? strerror(errno) : x);
	if (nested >= 0)
		close(nested);
	E2E_CHECK(count_entries(m, ".") == 6 && count_entries(m, "dir") == 1 && count_entries(m, "dir/sub") == 1 &&
			  count_entries(m, "empty") == 0,
		  "tree: entries: / has %d (want 6), dir %d (1), dir/sub %d (1), empty %d (0)",
		  count_entries(m, "."), count_entries(m, "dir"), count_entries(m, "dir/sub"),
		  count_entries(m, "empty"));
	struct statfs sfs;
	E2E_CHECK(fstatfs(m, &sfs) == 0 && sfs.f_type == SC_TMPFS_MAGIC && sfs.f_blocks == s8_blocks,
		  "tree: the mount fd is not a tmpfs of %lu blocks", s8_blocks);
}

static void s9_setup(void)
{
	live_tmpfs();
	fill_src();
	char b[PATH_MAX], src[PATH_MAX];
	path_of(b, "filebind");
	pathf(src, "%s/file", dir_src);
	bind_at(src, b, 1);
	struct rec *r = add("file", open(b, O_RDWR | O_CLOEXEC), K_FILE, UNMOUNTED, 1);
	lseek(r->fd, 4, SEEK_SET);
	set_content(r, data_a, LEN_A);
	set_live(r, "file");
	r->root = "/file";
	pathf(r->link, "/");
	detach(b, 1);
}

/* Scenario 11 (crcli's own): an ext4 filesystem on the block device named in DIR/blockdev (a loop
 * device the test made), mounted at DIR/disk; "sub/file" opened through a bind of DIR/disk/sub; then
 * the bind and the only mount of the filesystem are detached. Nothing attached shows the filesystem:
 * crcli must mount the device afresh (its Remount plan) and clone the sub-root /sub. */
static struct stat s11_st;

static void s11_setup(void)
{
	char dev[PATH_MAX] = "", p[PATH_MAX];
	path_of(p, "blockdev");
	FILE *f = fopen(p, "re");
	must(f && fgets(dev, sizeof(dev), f), "reading DIR/blockdev (the loop device the test made)");
	fclose(f);
	dev[strcspn(dev, "\n")] = 0;
	char disk[PATH_MAX];
	path_of(disk, "disk");
	mkdir_p(disk, 0755);
	must(mount(dev, disk, "ext4", 0, NULL) == 0, "mounting the ext4 block device on DIR/disk");
	data_a = make_data(111, LEN_A);
	int d = open(disk, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	must(d >= 0, "opening DIR/disk");
	must(mkdirat(d, "sub", 0755) == 0, "mkdir DIR/disk/sub");
	write_file_at(d, "sub/file", data_a, LEN_A, 0640);
	close(d);
	char *b = path_buf[0], src[PATH_MAX];
	path_of(b, "bind");
	pathf(src, "%s/sub", disk);
	bind_at(src, b, 0);
	struct rec *r = add("file", open_in(b, "file", O_RDWR), K_FILE, UNMOUNTED, 1);
	lseek(r->fd, 6, SEEK_SET);
	set_content(r, data_a, LEN_A);
	r->root = "/sub";
	pathf(r->link, "/file");
	must(fstat(r->fd, &s11_st) == 0, "fstat DIR/bind/file");
	detach(b, 0);
	detach(disk, 0);
}

/* The same file of the same device (a remount of the block device, not a copy). */
static void s11_check(void)
{
	struct rec *r = rec_by_label("file");
	struct stat st;
	E2E_CHECK(fstat(r->fd, &st) == 0 && st.st_dev == s11_st.st_dev && st.st_ino == s11_st.st_ino,
		  "file: not the same file of the block device (dev %#lx ino %lu, want dev %#lx ino %lu)",
		  (unsigned long)st.st_dev, (unsigned long)st.st_ino, (unsigned long)s11_st.st_dev,
		  (unsigned long)s11_st.st_ino);
}

/* Scenario 12 (crcli's own): a FIFO on an unmounted bind of DIR/src, opened twice through the bind
 * (a reader-writer fd holding unread bytes, and a non-blocking reader), then the bind detached. The
 * restore must reopen the FIFO through a clone of the live tmpfs (the same FIFO inode, on one unmounted
 * mount again) with its buffered bytes. A FIFO's mtime changes with every write, the refill included:
 * it is not compared. */
#define S12_BUFFERED "bytes buffered in the FIFO, not yet read"

static void s12_setup(void)
{
	live_tmpfs();
	fill_src();
	char p[PATH_MAX];
	pathf(p, "%s/fifo", dir_src);
	must(mkfifo(p, 0640) == 0, "mkfifo DIR/src/fifo");
	char *b = s_bind("bind", "");
	struct rec *rw = add("fiforw", open_in(b, "fifo", O_RDWR), K_FIFO, UNMOUNTED, 1);
	set_live(rw, "fifo");
	pathf(rw->link, "/fifo");
	struct rec *rd = add("fifordr", open_in(b, "fifo", O_RDONLY | O_NONBLOCK), K_FIFO, UNMOUNTED, 1);
	set_live(rd, "fifo");
	pathf(rd->link, "/fifo");
	size_t n = strlen(S12_BUFFERED);
	must(write(rw->fd, S12_BUFFERED, n) == (ssize_t)n, "writing into the FIFO");
	detach(b, 0);
}

static void s12_check(void)
{
	struct rec *rw = rec_by_label("fiforw"), *rd = rec_by_label("fifordr");
	int queued = -1;
	E2E_CHECK(ioctl(rd->fd, FIONREAD, &queued) == 0 && queued == (int)strlen(S12_BUFFERED),
		  "fifordr: %d bytes queued in the FIFO, want %zu", queued, strlen(S12_BUFFERED));
	char buf[128] = { 0 };
	ssize_t n = read(rd->fd, buf, sizeof(buf) - 1);
	E2E_CHECK(n == (ssize_t)strlen(S12_BUFFERED) && memcmp(buf, S12_BUFFERED, n) == 0,
		  "fifordr: read %zd bytes \"%s\" from the FIFO, want \"%s\"", n, n > 0 ? buf : "", S12_BUFFERED);
	/* Both fds are one FIFO: what one end writes, the other reads; and the live path is that FIFO. */
	E2E_CHECK(write(rw->fd, "x", 1) == 1 && read(rd->fd, buf, 1) == 1 && buf[0] == 'x',
		  "fiforw and fifordr are not the same FIFO");
	int live = open(rw->live, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	E2E_CHECK(live >= 0 && write(live, "y", 1) == 1 && read(rd->fd, buf, 1) == 1 && buf[0] == 'y',
		  "fifordr: a write through the live mount's %s does not reach it", rw->live);
	if (live >= 0)
		close(live);
}

/* Scenario 13 (crcli's own): a file unlinked while open on a tmpfs whose only mount was detached (a
 * lost superblock), "dir/gone" O_RDWR at offset 9, with a second, linked file "kept" held too. The
 * restore must recreate it in the fresh tmpfs through the mount fd and unlink it again: nlink 0, the
 * same "(deleted)" path, its content, size, mode and mtime. */
static void s13_setup(void)
{
	char lost[PATH_MAX];
	path_of(lost, "lost");
	mkdir_p(lost, 0755);
	must(mount("scenario-lost", lost, "tmpfs", 0, "size=4m,mode=0755") == 0, "mounting tmpfs on DIR/lost");
	data_a = make_data(131, LEN_A);
	data_b = make_data(132, LEN_B);
	char p[PATH_MAX];
	pathf(p, "%s/dir", lost);
	mkdir_p(p, 0755);
	struct rec *g = add("gone", open_in(lost, "dir/gone", O_RDWR | O_CREAT), K_FILE, UNMOUNTED, 1);
	write_all_at(g->fd, data_a, LEN_A, 0, "DIR/lost/dir/gone");
	must(fchmod(g->fd, 0604) == 0, "fchmod DIR/lost/dir/gone");
	struct timespec ts[2] = { { 1200000000, 5 }, { 1234567890, 123456789 } };
	must(futimens(g->fd, ts) == 0, "futimens DIR/lost/dir/gone");
	lseek(g->fd, 9, SEEK_SET);
	set_content(g, data_a, LEN_A);
	pathf(g->link, "/dir/gone (deleted)");
	pathf(p, "%s/dir/gone", lost);
	must(unlink(p) == 0, "unlinking DIR/lost/dir/gone");
	struct rec *k = add("kept", open_in(lost, "kept", O_RDWR | O_CREAT), K_FILE, UNMOUNTED, 1);
	write_all_at(k->fd, data_b, LEN_B, 0, "DIR/lost/kept");
	set_content(k, data_b, LEN_B);
	pathf(k->link, "/kept");
	detach(lost, 0);
}

static void s13_check(void)
{
	struct rec *g = rec_by_label("gone");
	struct stat st;
	E2E_CHECK(fstat(g->fd, &st) == 0 && st.st_nlink == 0, "gone: %lu links, want 0 (unlinked)",
		  (unsigned long)st.st_nlink);
	E2E_CHECK(g->sfs.f_type == SC_TMPFS_MAGIC, "gone: not on a tmpfs");
}

/* Scenario 14 (crcli's own): the three kinds at once, on one live tmpfs DIR/src: "c" attached
 * (O_RDONLY), "a" through a bind that was then detached (O_RDONLY at 2), and the mount fd of an
 * open_tree clone of DIR/src with "b" opened through it (O_RDWR at 7). In its own mount namespace
 * (the tests' own_mntns flavour), DIR/src exists only there. */
static void s14_setup(void)
{
	live_tmpfs();
	fill_src();
	char p[PATH_MAX];
	pathf(p, "%s/c", dir_src);
	struct rec *c = add("c", open(p, O_RDONLY | O_CLOEXEC), K_FILE, ATTACHED, 1);
	set_content(c, data_c, LEN_B);
	set_live(c, "c");
	set_attached(c);
	pathf(c->link, "%s", p);
	char *bd = s_bind("bind", "");
	struct rec *a = add("a", open_in(bd, "a", O_RDONLY), K_FILE, UNMOUNTED, 2);
	lseek(a->fd, 2, SEEK_SET);
	set_content(a, data_a, LEN_A);
	set_live(a, "a");
	pathf(a->link, "/a");
	s7_mfd = sys_open_tree(AT_FDCWD, dir_src, SC_OPEN_TREE_CLONE | O_CLOEXEC);
	s7_file = "b";
	struct rec *m = add("mountfd", s7_mfd, K_MOUNTFD, ANONYMOUS, 3);
	pathf(m->link, "/");
	pathf(m->live, "%s", dir_src);
	struct rec *b = add("b", openat(s7_mfd, "b", O_RDWR | O_CLOEXEC), K_FILE, ANONYMOUS, 3);
	lseek(b->fd, 7, SEEK_SET);
	set_content(b, data_b, LEN_B);
	set_live(b, "b");
	pathf(b->link, "/b");
	detach(bd, 0);
}

/* Scenario 15 (crcli's own): a file unlinked while open on an unmounted bind of the live DIR/src
 * ("gone", O_RDWR at 5). The restore cannot give it a name in the live filesystem (others would see
 * it): it is made with O_TMPFILE through a clone of DIR/src, so it is another inode of the same
 * filesystem, unlinked, with the content, mode and mtime, on an unmounted mount whose root is the
 * live root; its path ends in " (deleted)" (the kernel names an O_TMPFILE "/#INO"). */
static dev_t s15_dev;

static void s15_setup(void)
{
	live_tmpfs();
	fill_src();
	char *b = s_bind("bind", "");
	struct rec *g = add("gone", open_in(b, "gone", O_RDWR | O_CREAT), K_FILE, UNMOUNTED, 1);
	write_all_at(g->fd, data_a, LEN_A, 0, "DIR/bind/gone");
	must(fchmod(g->fd, 0604) == 0, "fchmod DIR/bind/gone");
	struct timespec ts[2] = { { 1300000000, 7 }, { 1333333333, 444444444 } };
	must(futimens(g->fd, ts) == 0, "futimens DIR/bind/gone");
	lseek(g->fd, 5, SEEK_SET);
	set_content(g, data_a, LEN_A);
	pathf(g->link, "* (deleted)");
	char p[PATH_MAX];
	pathf(p, "%s/gone", dir_src);
	must(unlink(p) == 0, "unlinking DIR/src/gone");
	struct stat st;
	must(stat(dir_src, &st) == 0, "stat DIR/src");
	s15_dev = st.st_dev;
	detach(b, 0);
}

static void s15_check(void)
{
	struct rec *g = rec_by_label("gone");
	struct stat st;
	E2E_CHECK(fstat(g->fd, &st) == 0 && st.st_nlink == 0, "gone: %lu links, want 0 (unlinked)",
		  (unsigned long)st.st_nlink);
	/* In the ns flavour the live tmpfs was made again: the one now at DIR/src. */
	dev_t live = s15_dev;
	struct stat lst;
	if (ns_flavour && stat(dir_src, &lst) == 0)
		live = lst.st_dev;
	E2E_CHECK(st.st_dev == live, "gone: on device %#lx, want the live tmpfs's %#lx",
		  (unsigned long)st.st_dev, (unsigned long)live);
	/* Nothing of it shows in the live filesystem. */
	DIR *d = opendir(dir_src);
	int extra = 0;
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, "file") &&
		    strcmp(e->d_name, "sub") && strcmp(e->d_name, "a") && strcmp(e->d_name, "b") &&
		    strcmp(e->d_name, "c"))
			extra++;
	if (d)
		closedir(d);
	E2E_CHECK(extra == 0, "gone: %d unexpected names in the live %s", extra, dir_src);
}

static void s10_setup(void)
{
	live_tmpfs();
	fill_src();
	char *bd = s_bind("bind", "");
	struct rec *a = add("a", open_in(bd, "a", O_RDONLY), K_FILE, UNMOUNTED, 1);
	lseek(a->fd, 2, SEEK_SET);
	set_content(a, data_a, LEN_A);
	set_live(a, "a");
	pathf(a->link, "/a");
	struct rec *b = add("b", open_in(bd, "b", O_WRONLY | O_APPEND), K_FILE, UNMOUNTED, 1);
	set_content(b, data_b, LEN_B);
	set_live(b, "b");
	pathf(b->link, "/b");
	char p[PATH_MAX];
	pathf(p, "%s/c", dir_src);
	struct rec *c = add("c", open(p, O_RDONLY), K_FILE, ATTACHED, 2);
	set_content(c, data_c, LEN_B);
	set_live(c, "c");
	set_attached(c);
	pathf(c->link, "%s", p);
	detach(bd, 0);
}

/* ---- main ---- */

static void corrupt(void)
{
	struct rec *r = &recs[0];
	switch (scenario) {
	case 1:
		corrupt_generic(r);
		if (e2e_corrupt("mount"))
			corrupt_reclone(r, "file"); /* on a clone: no longer attached */
		break;
	case 2:
		corrupt_generic(r);
		if (e2e_corrupt("mount"))
			replace_fd(r, open(r->live, open_flags(r) | O_CLOEXEC)); /* attached instead */
		break;
	case 3:
		corrupt_generic(r);
		if (e2e_corrupt("mount")) {
			char p[PATH_MAX];
			path_of(p, "lost-copy");
			int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
			write_all_at(fd, data_a, LEN_A, 0, "lost-copy");
			replace_fd(r, fd);
		}
		if (e2e_corrupt("meta"))
			fchmod(r->fd, 0644);
		if (e2e_corrupt("hole"))
			write_all_at(r->fd, "h", 1, S3_HOLE_DATA / 2, "the hole");
		if (e2e_corrupt("xattr"))
			fremovexattr(r->fd, "user.crcli");
		break;
	case 4:
		corrupt_generic(r);
		if (e2e_corrupt("root"))
			corrupt_reclone(r, "sub/file");
		break;
	case 5:
		if (e2e_corrupt("share"))
			corrupt_reclone(rec_by_label("pathfd"), "file");
		if (e2e_corrupt("mount"))
			replace_fd(rec_by_label("dirfd"), open(dir_src, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
		break;
	case 6:
		corrupt_generic(r);
		if (e2e_corrupt("attr"))
			corrupt_reclone(r, "file");
		break;
	case 7:
		corrupt_generic(rec_by_label("file"));
		if (e2e_corrupt("mountfd")) {
			char p[PATH_MAX];
			path_of(p, "other");
			mkdir_p(p, 0755);
			replace_fd(rec_by_label("mountfd"), sys_open_tree(AT_FDCWD, p, SC_OPEN_TREE_CLONE | O_CLOEXEC));
		}
		if (e2e_corrupt("share"))
			corrupt_reclone(rec_by_label("file"), "file");
		break;
	case 8:
		if (e2e_corrupt("tree"))
			unlinkat(s8_mfd, "dir/sub/nested", 0);
		if (e2e_corrupt("mountfd")) {
			int fs = sys_fsopen("tmpfs", 0);
			if (fs < 0 || sys_fsconfig(fs, SC_FSCONFIG_CMD_CREATE, NULL, NULL, 0) != 0)
				E2E_DIE("corrupting: %s", strerror(errno));
			replace_fd(rec_by_label("mountfd"), sys_fsmount(fs, SC_FSMOUNT_CLOEXEC, 0));
			close(fs);
		}
		if (e2e_corrupt("share"))
			corrupt_copy(rec_by_label("file"));
		break;
	case 9:
		corrupt_generic(r);
		if (e2e_corrupt("root"))
			corrupt_reclone(r, "file");
		break;
	case 11:
		corrupt_generic(r);
		break;
	case 15:
		corrupt_generic(r); /* `write`: a copy in a fresh tmpfs */
		break;
	case 14:
		corrupt_generic(rec_by_label("b"));
		if (e2e_corrupt("share"))
			corrupt_reclone(rec_by_label("b"), "b");
		if (e2e_corrupt("separate"))
			replace_fd(rec_by_label("c"), dup(rec_by_label("a")->fd));
		break;
	case 12:
		if (e2e_corrupt("data")) {
			char buf[8];
			must(read(rec_by_label("fifordr")->fd, buf, 1) == 1, "corrupting: reading the FIFO");
		}
		if (e2e_corrupt("share"))
			corrupt_reclone(rec_by_label("fifordr"), "fifo");
		if (e2e_corrupt("mount"))
			replace_fd(rec_by_label("fiforw"), open(rec_by_label("fiforw")->live, O_RDWR | O_CLOEXEC));
		break;
	case 13:
		corrupt_generic(r); /* `write`: a named copy in a fresh tmpfs (a restore that forgot to unlink) */
		if (e2e_corrupt("share"))
			corrupt_copy(rec_by_label("kept"));
		break;
	case 10:
		corrupt_generic(r);
		if (e2e_corrupt("share"))
			corrupt_reclone(rec_by_label("b"), "b");
		if (e2e_corrupt("separate"))
			replace_fd(rec_by_label("c"), dup(rec_by_label("a")->fd));
		break;
	}
}

int main(int argc, char **argv)
{
	e2e_init(argc, argv, "N (scenario 1..15)");
	scenario = argc > 2 ? atoi(argv[2]) : 0;
	if (scenario < 1 || scenario > 15) {
		fprintf(stderr, "%s: the scenario must be 1..15\n", e2e_name);
		exit(2);
	}
	by_fd = have_by_fd();
	const char *ns_env = getenv("CRCLI_SCENARIO_NS");
	ns_flavour = ns_env && strcmp(ns_env, "1") == 0;
	const char *vm = getenv("CRCLI_VM");
	if (!by_fd && vm && strcmp(vm, "1") == 0)
		E2E_DIE("setup: statmount(STATMOUNT_BY_FD) is missing, but CRCLI_VM=1 requires it (Linux 7.0)");
	if (!by_fd)
		printf("%s: note: no statmount(STATMOUNT_BY_FD) on this kernel (Linux 7.0): the BY_FD checks "
		       "are left out\n",
		       e2e_name);
	path_of(dir_src, "src");
	switch (scenario) {
	case 1: s1_setup(); break;
	case 2: s2_setup(); break;
	case 3: s3_setup(); break;
	case 4: s4_setup(); break;
	case 5: s5_setup(); break;
	case 6: s6_setup(); break;
	case 7: s7_setup(); break;
	case 8: s8_setup(); break;
	case 9: s9_setup(); break;
	case 10: s10_setup(); break;
	case 11: s11_setup(); break;
	case 12: s12_setup(); break;
	case 13: s13_setup(); break;
	case 14: s14_setup(); break;
	case 15: s15_setup(); break;
	}
	for (int i = 0; i < nrec; i++)
		snapshot(&recs[i]);
	/* The state must be the scenario's before anything else happens. */
	for (int i = 0; i < nrec; i++)
		check_rec(&recs[i]);
	check_groups();
	if (e2e_failures)
		E2E_DIE("setup: the state does not match scenario %d (see above)", scenario);
	char fds[1024] = "";
	for (int i = 0; i < nrec; i++) {
		size_t n = strlen(fds);
		snprintf(fds + n, sizeof(fds) - n, "%d %s %s\n", recs[i].fd, recs[i].label,
			 state_name[recs[i].state]);
	}
	e2e_write_atomic("fds", fds);
	e2e_ready();
	e2e_wait_go(10);

	corrupt();
	for (int i = 0; i < nrec; i++)
		check_rec(&recs[i]);
	check_groups();
	if (scenario == 3)
		s3_check();
	if (scenario == 5)
		s5_check();
	if (scenario == 8)
		s8_check();
	if (scenario == 11)
		s11_check();
	if (scenario == 12)
		s12_check();
	if (scenario == 13)
		s13_check();
	if (scenario == 15)
		s15_check();
	for (int i = 0; i < nrec; i++)
		check_writes(&recs[i]);
	if (scenario == 7 || scenario == 14)
		s7_mount_fd_works();
	e2e_finish();
}
