/* Engine test program: a small process tree. The root makes itself a session leader, opens a
 * file (one open file description, offset 2) and a pipe holding "in-flight", then forks:
 *   A: a process-group leader (setpgid(0, 0)) that inherits the file and the pipe;
 *   B: a member of A's process group (a group led by its sibling);
 *   Z: exits at once with status 3 and stays a zombie.
 * After DIR/go: A reads one byte through the shared description and the 9 buffered bytes of the
 * pipe; B checks its parent, group and session; the root reaps Z (status 3), A and B (each exit
 * 0 when its checks pass) and checks that A's read moved the offset it shares with A (2 -> 3).
 * It works as PID 1 of its own PID namespace too (no /proc lookups).
 * Protocol as fdtable.c: DIR/ready (the root's pid), DIR/go, DIR/result, exit 0 or 1. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *dir;
static pid_t root;

static void put(const char *name, const char *text) {
    char tmp[4200], path[4200];
    snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(tmp, "w");
    if (!f) exit(2);
    fputs(text, f);
    fclose(f);
    rename(tmp, path);
}

static void await_go(void) {
    char path[4200];
    snprintf(path, sizeof path, "%s/go", dir);
    struct timespec ten_ms = {0, 10 * 1000 * 1000};
    while (access(path, F_OK) != 0) {
        /* A child whose parent is gone (a failed test) must not outlive it. */
        if (getpid() != root && getppid() != root) _exit(99);
        nanosleep(&ten_ms, NULL);
    }
}

/* Whether child `pid` has exited (it stays a zombie: WNOWAIT). Works in any PID namespace. */
static int exited(pid_t pid) {
    siginfo_t si;
    si.si_pid = 0;
    return waitid(P_PID, pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    dir = argv[1];
    if (setsid() < 0) { perror("setsid"); return 2; }
    root = getpid();
    char path[4200];
    snprintf(path, sizeof path, "%s/shared", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, "0123456789", 10) != 10 || lseek(fd, 2, SEEK_SET) != 2) return 2;
    int p[2];
    if (pipe(p) < 0 || write(p[1], "in-flight", 9) != 9) return 2;

    pid_t a = fork();
    if (a == 0) {
        setpgid(0, 0);
        await_go();
        char c = 0, buf[16] = "";
        if (read(fd, &c, 1) != 1 || c != '2') _exit(10);
        if (read(p[0], buf, 9) != 9 || memcmp(buf, "in-flight", 9) != 0) _exit(11);
        if (getppid() != root || getpgrp() != getpid() || getsid(0) != root) _exit(12);
        _exit(0);
    }
    setpgid(a, a); /* also from the parent, so that B can join at once */
    pid_t b = fork();
    if (b == 0) {
        if (setpgid(0, a) < 0) _exit(20);
        await_go();
        if (getppid() != root) _exit(21);
        if (getpgrp() != a) _exit(22);
        if (getsid(0) != root) _exit(23);
        _exit(0);
    }
    pid_t z = fork();
    if (z == 0) _exit(3);
    /* Ready when Z is a zombie and B is in A's group. */
    struct timespec ms = {0, 1000 * 1000};
    for (;;) {
        if (exited(z) && getpgid(b) == a) break;
        nanosleep(&ms, NULL);
    }
    char buf[64];
    snprintf(buf, sizeof buf, "%d\n", root);
    put("ready", buf);
    await_go();

    char res[512] = "";
    int st = -1;
    if (waitpid(z, &st, 0) != z || st != (3 << 8))
        snprintf(res, sizeof res, "FAIL: zombie %d: status %#x, expected 0x300\n", z, st);
    if (!res[0] && (waitpid(a, &st, 0) != a || st != 0))
        snprintf(res, sizeof res, "FAIL: A (%d) ended with status %#x\n", a, st);
    if (!res[0] && (waitpid(b, &st, 0) != b || st != 0))
        snprintf(res, sizeof res, "FAIL: B (%d) ended with status %#x\n", b, st);
    off_t off = lseek(fd, 0, SEEK_CUR);
    if (!res[0] && off != 3)
        snprintf(res, sizeof res, "FAIL: the shared offset is %ld, expected 3\n", (long)off);
    if (!res[0] && getsid(0) != root)
        snprintf(res, sizeof res, "FAIL: the root's session is %d\n", getsid(0));
    if (!res[0]) snprintf(res, sizeof res, "PASS root %d A %d B %d Z %d\n", root, a, b, z);
    put("result", res);
    return strncmp(res, "PASS", 4) == 0 ? 0 : 1;
}
