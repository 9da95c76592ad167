/* Engine test program: an fd table with many kinds of fds at chosen numbers, cwd, umask and a
 * resource limit; after restore it checks every one of them.
 * Usage: fdtable DIR. Writes DIR/ready (its pid), waits for DIR/go, writes DIR/result
 * ("PASS" or "FAIL: ..."), exits 0 or 1. stdin/stdout/stderr are set up by the test. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static char dir[4096];
static char first_failure[512];
static int failures;

static void fail(const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "FAIL: %s\n", buf);
    if (!failures++) snprintf(first_failure, sizeof first_failure, "%s", buf);
}

static void at(int fd, int want) {
    if (fd != want) {
        if (dup2(fd, want) < 0) { perror("dup2"); exit(2); }
        close(fd);
    }
}

static void put(const char *name, const char *text) {
    char tmp[4200], path[4200];
    snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(tmp, "w");
    if (!f) { perror(tmp); exit(2); }
    fputs(text, f);
    fclose(f);
    rename(tmp, path);
}

static void check_fl(int fd, int want_acc, int want_bits, int want_cloexec) {
    int fl = fcntl(fd, F_GETFL);
    int fdfl = fcntl(fd, F_GETFD);
    if (fl < 0) { fail("fd %d is not open", fd); return; }
    if ((fl & O_ACCMODE) != want_acc && !(want_acc == O_PATH)) fail("fd %d access mode %o, want %o", fd, fl & O_ACCMODE, want_acc);
    if ((fl & want_bits) != want_bits) fail("fd %d flags %o lack %o", fd, fl, want_bits);
    if (!!(fdfl & FD_CLOEXEC) != want_cloexec) fail("fd %d FD_CLOEXEC is %d, want %d", fd, !!(fdfl & FD_CLOEXEC), want_cloexec);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    snprintf(dir, sizeof dir, "%s", argv[1]);
    /* Whatever the test runner leaked to us is not part of the table under test. */
    syscall(SYS_close_range, 3, ~0U, 0);
    /* A session leader, as a daemon is: the restore must make it one again. */
    if (setsid() < 0) { perror("setsid"); return 2; }
    char path[4200];
    int p[2];
    if (pipe(p)) return 2;
    at(p[0], 3);
    at(p[1], 4);
    if (write(4, "hello pipe", 10) != 10) return 2;
    snprintf(path, sizeof path, "%s/data", dir);
    at(open(path, O_RDWR | O_CREAT | O_APPEND, 0600), 10);
    if (write(10, "0123456789", 10) != 10) return 2;
    at(open(path, O_RDONLY), 11);
    lseek(11, 4, SEEK_SET);
    if (dup3(11, 12, O_CLOEXEC) != 12) return 2;
    at(open(dir, O_RDONLY | O_DIRECTORY), 20);
    at(open(path, O_PATH), 21);
    at(open("/dev/null", O_WRONLY | O_NONBLOCK), 30);
    snprintf(path, sizeof path, "%s/fifo", dir);
    if (mkfifo(path, 0600)) return 2;
    at(open(path, O_RDONLY | O_NONBLOCK), 40);
    at(open(path, O_WRONLY), 41);
    if (write(41, "fifo data", 9) != 9) return 2;
    snprintf(path, sizeof path, "%s/gone", dir);
    at(open(path, O_RDWR | O_CREAT | O_EXCL, 0640), 100);
    if (write(100, "secret", 6) != 6) return 2;
    lseek(100, 3, SEEK_SET);
    unlink(path);
    umask(027);
    if (chdir(dir)) return 2;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = 2000;
    setrlimit(RLIMIT_NOFILE, &rl);
    struct stat dir_st;
    stat(dir, &dir_st);

    char pidbuf[32];
    snprintf(pidbuf, sizeof pidbuf, "%d\n", getpid());
    put("ready", pidbuf);
    snprintf(path, sizeof path, "%s/go", dir);
    while (access(path, F_OK) != 0) usleep(10000);

    /* The fd table: exactly these numbers. */
    int want[] = {0, 1, 2, 3, 4, 10, 11, 12, 20, 21, 30, 40, 41, 100};
    int nwant = sizeof want / sizeof want[0], seen = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        int fd = atoi(e->d_name), ok = 0;
        if (fd == dirfd(d)) continue;
        for (int i = 0; i < nwant; i++) ok |= want[i] == fd;
        if (ok) seen++; else fail("unexpected fd %d is open", fd);
    }
    if (d) closedir(d);
    if (seen != nwant) fail("%d of %d expected fds are open", seen, nwant);

    check_fl(3, O_RDONLY, 0, 0);
    check_fl(4, O_WRONLY, 0, 0);
    check_fl(10, O_RDWR, O_APPEND, 0);
    check_fl(11, O_RDONLY, 0, 0);
    check_fl(12, O_RDONLY, 0, 1);
    check_fl(20, O_RDONLY, O_DIRECTORY, 0);
    check_fl(21, O_PATH, O_PATH, 0);
    check_fl(30, O_WRONLY, O_NONBLOCK, 0);
    check_fl(40, O_RDONLY, O_NONBLOCK, 0);
    check_fl(41, O_WRONLY, 0, 0);
    check_fl(100, O_RDWR, 0, 0);
    if (fcntl(41, F_GETFL) & O_NONBLOCK) fail("fd 41 gained O_NONBLOCK");

    char buf[64] = {0};
    if (read(3, buf, sizeof buf) != 10 || memcmp(buf, "hello pipe", 10)) fail("pipe content %s", buf);
    memset(buf, 0, sizeof buf);
    if (read(40, buf, sizeof buf) != 9 || memcmp(buf, "fifo data", 9)) fail("FIFO content %s", buf);
    if (read(40, buf, sizeof buf) != -1 || errno != EAGAIN) fail("the FIFO holds more than its data");
    if (write(41, "x", 1) != 1 || read(40, buf, 1) != 1 || buf[0] != 'x') fail("fds 40 and 41 are not one FIFO");
    if (lseek(10, 0, SEEK_CUR) != 10) fail("fd 10 offset %ld", (long)lseek(10, 0, SEEK_CUR));
    if (lseek(11, 0, SEEK_CUR) != 4) fail("fd 11 offset %ld", (long)lseek(11, 0, SEEK_CUR));
    if (read(12, buf, 1) != 1 || buf[0] != '4') fail("fd 12 read %c", buf[0]);
    if (lseek(11, 0, SEEK_CUR) != 5) fail("fds 11 and 12 do not share their offset");
    if (write(10, "X", 1) != 1) fail("append through fd 10");
    if (pread(11, buf, 1, 10) != 1 || buf[0] != 'X') fail("the append did not land in the file");
    struct stat st;
    if (fstat(20, &st) || st.st_ino != dir_st.st_ino || !S_ISDIR(st.st_mode)) fail("fd 20 is not the directory");
    int sub = openat(20, "data", O_RDONLY);
    if (sub < 0) fail("openat through fd 20: %s", strerror(errno)); else close(sub);
    if (fstat(21, &st) || !S_ISREG(st.st_mode) || st.st_size != 11) fail("fd 21 (O_PATH) is not the data file");
    if (fstat(30, &st) || st.st_rdev != makedev(1, 3)) fail("fd 30 is not /dev/null");
    if (fstat(100, &st) || st.st_nlink != 0 || st.st_size != 6 || (st.st_mode & 07777) != 0640)
        fail("fd 100: nlink %ld size %ld mode %o", (long)st.st_nlink, (long)st.st_size, st.st_mode & 07777);
    if (pread(100, buf, 6, 0) != 6 || memcmp(buf, "secret", 6)) fail("fd 100 content");
    if (lseek(100, 0, SEEK_CUR) != 3) fail("fd 100 offset");
    snprintf(path, sizeof path, "%s/gone", dir);
    if (access(path, F_OK) == 0) fail("the unlinked file has a name again");
    if (getsid(0) != getpid() || getpgrp() != getpid()) fail("not a session leader: sid %d pgid %d pid %d", getsid(0), getpgrp(), getpid());
    mode_t old = umask(0);
    if (old != 027) fail("umask %o", old);
    char cwd[4200];
    if (!getcwd(cwd, sizeof cwd) || strcmp(cwd, dir)) fail("cwd %s", cwd);
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur != 2000) fail("RLIMIT_NOFILE %ld", (long)rl.rlim_cur);

    char res[700];
    if (failures) snprintf(res, sizeof res, "FAIL: %s (%d failed checks)\n", first_failure, failures);
    else snprintf(res, sizeof res, "PASS\n");
    put("result", res);
    return failures ? 1 : 0;
}
