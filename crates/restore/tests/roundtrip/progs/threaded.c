/* Engine test program: a process with 3 more threads, each sleeping 10 ms per turn. Writes
 * DIR/tids (the main thread's id, then the others', one per line) and then DIR/ready (its pid);
 * after DIR/go it checks every thread kept its id and writes DIR/result (PASS or FAIL: why).
 * Usage: threaded DIR. Protocol as fdtable.c. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define N 3

static pid_t tids[N];
static volatile int started, stop;
static volatile int bad[N];

static pid_t gettid_(void) { return (pid_t)syscall(SYS_gettid); }

static void *worker(void *arg) {
    int i = (int)(long)arg;
    tids[i] = gettid_();
    __atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
    struct timespec ten = {0, 10 * 1000000L};
    while (!stop) nanosleep(&ten, NULL);
    bad[i] = gettid_() != tids[i];
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    dir = argv[1];
    pthread_t th[N];
    for (long i = 0; i < N; i++)
        if (pthread_create(&th[i], NULL, worker, (void *)i)) return 2;
    struct timespec ms = {0, 1000000L};
    while (__atomic_load_n(&started, __ATOMIC_SEQ_CST) < N) nanosleep(&ms, NULL);
    char text[256];
    int len = snprintf(text, sizeof text, "%d\n", getpid());
    for (int i = 0; i < N; i++) len += snprintf(text + len, sizeof text - len, "%d\n", tids[i]);
    put("tids", text);
    snprintf(text, sizeof text, "%d\n", getpid());
    put("ready", text);
    char go[4200];
    snprintf(go, sizeof go, "%s/go", dir);
    while (access(go, F_OK) != 0) nanosleep(&ms, NULL);
    stop = 1;
    int fails = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        fails += bad[i];
    }
    put("result", fails ? "FAIL: a thread id changed\n" : "PASS\n");
    return fails ? 1 : 0;
}
