/* Engine test program: exit signals and a zombie killed by a real-time signal. The root blocks
 * SIGUSR1 and SIGUSR2 and makes:
 *   L: a live child made by clone() with SIGUSR1 as its exit signal;
 *   Z: a child made with SIGUSR2 as its exit signal that exits at once with status 6 (a
 *      zombie; the root takes the SIGUSR2 it got with sigwaitinfo);
 *   R: a child killed by SIGRTMIN+3, left a zombie.
 * After DIR/go the root checks: L's exit signal in /proc/L/stat (field 38) is SIGUSR1; no
 * SIGUSR2 is pending (remaking Z sent none to the restored root); Z is a "clone" child (not
 * seen by waitpid without __WCLONE) with status 6; R died by SIGRTMIN+3; then L exits and
 * the root gets SIGUSR1 for it, and reaps it with status 5.
 * Protocol as fdtable.c: DIR/ready (the root's pid), DIR/go, DIR/result, exit 0 or 1. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

static int live_child(void *arg) {
    (void)arg;
    await_file("go", left_tree);
    await_file("end-L", left_tree);
    _exit(5);
}

static int quick_child(void *arg) {
    (void)arg;
    _exit(6);
}

/* Field 38 (exit_signal) of /proc/PID/stat; -1 on error. */
static int exit_signal_of(pid_t pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    p += 2; /* field 3 */
    for (int field = 3; field < 38; field++) {
        p = strchr(p, ' ');
        if (!p) return -1;
        p++;
    }
    return atoi(p);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    dir = argv[1];
    root = getpid();
    sigset_t usr;
    sigemptyset(&usr);
    sigaddset(&usr, SIGUSR1);
    sigaddset(&usr, SIGUSR2);
    sigprocmask(SIG_BLOCK, &usr, NULL);
    size_t stack_size = 64 * 1024;
    char *stack1 = malloc(stack_size), *stack2 = malloc(stack_size);
    if (!stack1 || !stack2) return 2;
    pid_t l = clone(live_child, stack1 + stack_size, SIGUSR1, NULL);
    pid_t z = clone(quick_child, stack2 + stack_size, SIGUSR2, NULL);
    if (l < 0 || z < 0) return 2;
    sigset_t only2;
    sigemptyset(&only2);
    sigaddset(&only2, SIGUSR2);
    struct timespec limit = {60, 0};
    siginfo_t si;
    if (sigtimedwait(&only2, &si, &limit) != SIGUSR2 || si.si_pid != z) return 3;
    siginfo_t zi;
    zi.si_pid = 0;
    if (waitid(P_PID, z, &zi, WEXITED | WNOWAIT | __WCLONE) != 0 || zi.si_pid != z) return 4;
    pid_t r = fork();
    if (r == 0) {
        for (;;) pause();
    }
    if (r < 0 || kill(r, SIGRTMIN + 3) != 0) return 5;
    siginfo_t ri;
    ri.si_pid = 0;
    if (waitid(P_PID, r, &ri, WEXITED | WNOWAIT) != 0 || ri.si_pid != r) return 6;

    ready_then_await_go(root, left_tree);

    char res[512] = "";
    int st = -1;
    int es = exit_signal_of(l);
    if (es != SIGUSR1) snprintf(res, sizeof res, "FAIL: L's exit signal is %d, not %d\n", es, SIGUSR1);
    sigset_t pending;
    sigpending(&pending);
    if (!res[0] && sigismember(&pending, SIGUSR2))
        snprintf(res, sizeof res, "FAIL: a SIGUSR2 is pending after the restore\n");
    errno = 0;
    if (!res[0] && (waitpid(z, &st, WNOHANG) != -1 || errno != ECHILD))
        snprintf(res, sizeof res, "FAIL: Z is seen by waitpid without __WCLONE (errno %d)\n", errno);
    if (!res[0] && (waitpid(z, &st, __WCLONE) != z || st != (6 << 8)))
        snprintf(res, sizeof res, "FAIL: zombie Z %d: status %#x, expected 0x600\n", z, st);
    if (!res[0] && (waitpid(r, &st, 0) != r || !WIFSIGNALED(st) || WTERMSIG(st) != SIGRTMIN + 3))
        snprintf(res, sizeof res, "FAIL: zombie R %d: status %#x, expected death by signal %d\n", r,
                 st, SIGRTMIN + 3);
    if (!res[0]) {
        put("end-L", "");
        sigset_t only1;
        sigemptyset(&only1);
        sigaddset(&only1, SIGUSR1);
        int got = sigtimedwait(&only1, &si, &limit);
        if (got != SIGUSR1 || si.si_pid != l)
            snprintf(res, sizeof res, "FAIL: no SIGUSR1 from L's exit (got %d from %d)\n", got,
                     got > 0 ? si.si_pid : 0);
        else if (waitpid(l, &st, __WALL) != l || st != (5 << 8))
            snprintf(res, sizeof res, "FAIL: L %d ended with status %#x, expected 0x500\n", l, st);
    }
    if (!res[0]) snprintf(res, sizeof res, "PASS root %d L %d Z %d R %d\n", root, l, z, r);
    put("result", res);
    return strncmp(res, "PASS", 4) == 0 ? 0 : 1;
}
