/* Engine test program: a process whose second thread runs SCHED_BATCH with nice 5, pinned to
 * CPU 0, while the main thread keeps the policy, nice value and affinity it started with. After
 * DIR/go each thread checks its own settings again (sched_getscheduler, getpriority,
 * sched_getaffinity) and the program writes DIR/result (PASS or FAIL: why).
 * Usage: sched DIR. Protocol as fdtable.c (DIR/ready, DIR/go, DIR/result). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common.h"

static volatile int set_up, go, checked;
static char worker_why[256];
static int main_policy, main_nice;
static cpu_set_t main_cpus;

static pid_t gettid_(void) { return (pid_t)syscall(SYS_gettid); }

/* Checks the calling thread: policy, nice value, affinity. Writes why into WHY on a mismatch. */
static int check(int policy, int nice, const cpu_set_t *cpus, char *why, size_t len) {
    cpu_set_t now;
    int p = sched_getscheduler(0);
    errno = 0;
    int n = getpriority(PRIO_PROCESS, gettid_());
    if (p != policy || n != nice) {
        snprintf(why, len, "thread %d: policy %d nice %d, expected policy %d nice %d", gettid_(), p,
                 n, policy, nice);
        return 0;
    }
    if (sched_getaffinity(0, sizeof now, &now) || !CPU_EQUAL(&now, cpus)) {
        snprintf(why, len, "thread %d: %d CPUs in its affinity (CPU 0: %d), expected %d", gettid_(),
                 CPU_COUNT(&now), CPU_ISSET(0, &now), CPU_COUNT(cpus));
        return 0;
    }
    return 1;
}

static void *worker(void *arg) {
    (void)arg;
    cpu_set_t zero;
    CPU_ZERO(&zero);
    CPU_SET(0, &zero);
    struct sched_param sp = {0};
    if (sched_setaffinity(0, sizeof zero, &zero) || sched_setscheduler(0, SCHED_BATCH, &sp) ||
        setpriority(PRIO_PROCESS, gettid_(), 5)) {
        snprintf(worker_why, sizeof worker_why, "setting up the worker failed");
        set_up = -1;
        return NULL;
    }
    set_up = 1;
    struct timespec ms = {0, 1000000L};
    while (!go) nanosleep(&ms, NULL);
    checked = check(SCHED_BATCH, 5, &zero, worker_why, sizeof worker_why) ? 1 : -1;
    return NULL;
}



int main(int argc, char **argv) {
    if (argc < 2) return 2;
    dir = argv[1];
    main_policy = sched_getscheduler(0);
    main_nice = getpriority(PRIO_PROCESS, gettid_());
    if (sched_getaffinity(0, sizeof main_cpus, &main_cpus)) return 2;
    pthread_t th;
    if (pthread_create(&th, NULL, worker, NULL)) return 2;
    struct timespec ms = {0, 1000000L};
    while (!set_up) nanosleep(&ms, NULL);
    if (set_up < 0) {
        put("result", "FAIL: setting up the worker failed\n");
        return 2;
    }
    ready_then_await_go(getpid(), NULL);
    go = 1;
    pthread_join(th, NULL);
    char why[300];
    if (checked != 1) {
        snprintf(why, sizeof why, "FAIL: %s\n", worker_why);
        put("result", why);
        return 1;
    }
    char mwhy[256];
    if (!check(main_policy, main_nice, &main_cpus, mwhy, sizeof mwhy)) {
        snprintf(why, sizeof why, "FAIL: %s\n", mwhy);
        put("result", why);
        return 1;
    }
    put("result", "PASS\n");
    return 0;
}
