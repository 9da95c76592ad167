/* Engine test program: a small process tree. The root makes itself a session leader, opens a
 * file (one open file description, offset 2) and a pipe holding "in-flight", then forks:
 *   A: a process-group leader (setpgid(0, 0)) that inherits the file and the pipe;
 *   B: a member of A's process group (a group led by its sibling);
 *   Z: exits at once with status 3 and stays a zombie.
 * After DIR/go: A reads one byte through the shared description and the 9 buffered bytes of the
 * pipe; B checks its parent, group and session; the root reaps Z (status 3), A and B (each exit
 * 0 when its checks pass) and checks that A's read moved the offset it shares with A (2 -> 3).
 * The root also has two more threads and signals pending: SIGCHLD (blocked) from Z's exit, in
 * its shared queue, and in each thread's own queue a SIGUSR2 (blocked) it sent itself (tgkill).
 * After DIR/go each thread checks that its thread id is the one it had (gettid) and takes its
 * SIGUSR2 (sent by itself: si_pid is the root, a user si_code); the root takes the SIGCHLD
 * (si_pid Z, CLD_EXITED, status 3) before reaping anyone. The result names the thread ids.
 * It works as PID 1 of its own PID namespace too (no /proc lookups).
 * Protocol as fdtable.c: DIR/ready (the root's pid), DIR/go, DIR/result, exit 0 or 1. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

static atomic_int started;
static pid_t tids[2];

/* A thread of the root: records its id, queues itself a blocked SIGUSR2, then after DIR/go
 * checks both. Returns 0 on success, else a failure code. */
static void *worker(void *arg) {
    int i = (int)(long)arg;
    pid_t tid = (pid_t)syscall(SYS_gettid);
    tids[i] = tid;
    if (syscall(SYS_tgkill, getpid(), tid, SIGUSR2) != 0) return (void *)30L;
    atomic_fetch_add(&started, 1);
    await_file("go", left_tree);
    if ((pid_t)syscall(SYS_gettid) != tids[i]) return (void *)31L;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    siginfo_t si;
    struct timespec zero = {0, 0};
    if (sigtimedwait(&set, &si, &zero) != SIGUSR2) return (void *)32L;
    if (si.si_code > 0 || si.si_pid != root) return (void *)33L; /* SI_USER or SI_TKILL */
    return (void *)0L;
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
        await_file("go", left_tree);
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
        await_file("go", left_tree);
        if (getppid() != root) _exit(21);
        if (getpgrp() != a) _exit(22);
        if (getsid(0) != root) _exit(23);
        _exit(0);
    }
    sigset_t blocked;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGCHLD);
    sigaddset(&blocked, SIGUSR2);
    if (sigprocmask(SIG_BLOCK, &blocked, NULL) != 0) return 2;
    pid_t z = fork();
    if (z == 0) _exit(3);
    pthread_t th[2];
    for (long i = 0; i < 2; i++)
        if (pthread_create(&th[i], NULL, worker, (void *)i) != 0) return 2;
    /* Ready when Z is a zombie and B is in A's group. */
    struct timespec ms = {0, 1000 * 1000};
    for (;;) {
        if (exited(z) && getpgid(b) == a && atomic_load(&started) == 2) break;
        nanosleep(&ms, NULL);
    }
    ready_then_await_go(root, left_tree);

    char res[512] = "";
    int st = -1;
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    siginfo_t si;
    struct timespec zero = {0, 0};
    memset(&si, 0, sizeof si);
    if (sigtimedwait(&chld, &si, &zero) != SIGCHLD || si.si_pid != z || si.si_code != CLD_EXITED
        || si.si_status != 3)
        snprintf(res, sizeof res, "FAIL: pending SIGCHLD: pid %d code %d status %d\n", si.si_pid,
                 si.si_code, si.si_status);
    for (int i = 0; i < 2; i++) {
        void *ret = NULL;
        if (pthread_join(th[i], &ret) != 0) ret = (void *)39L;
        if (!res[0] && ret)
            snprintf(res, sizeof res, "FAIL: thread %d failed with %ld\n", tids[i], (long)ret);
    }
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
    if (!res[0])
        snprintf(res, sizeof res, "PASS root %d A %d B %d Z %d T %d %d\n", root, a, b, z,
                 tids[0], tids[1]);
    put("result", res);
    return strncmp(res, "PASS", 4) == 0 ? 0 : 1;
}
