/* Engine test program: a process with armed interval timers. ITIMER_REAL fires after 2 s and
 * then every second (a SIGALRM handler counts), ITIMER_VIRTUAL is armed (100 s, every 50 s: the
 * process sleeps, it never fires), ITIMER_PROF is disarmed. After DIR/go it checks with getitimer
 * that the timers are still set as they were (REAL: interval 1 s, some time left, at most 2 s;
 * VIRTUAL: interval 50 s, some time left, at most 100 s and a tick; PROF: disarmed) and that SIGALRM keeps
 * arriving (two more within 10 s), and writes DIR/result (PASS or FAIL: why).
 * Usage: itimer DIR. Protocol as fdtable.c (DIR/ready, DIR/go, DIR/result). */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

static volatile sig_atomic_t alarms;

static void on_alarm(int sig) {
    (void)sig;
    alarms++;
}

static long long us(struct timeval tv) { return tv.tv_sec * 1000000LL + tv.tv_usec; }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int fail(const char *why) {
    char text[512];
    snprintf(text, sizeof text, "FAIL: %s\n", why);
    put("result", text);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    dir = argv[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGALRM, &sa, NULL)) return 2;
    struct itimerval real = {{1, 0}, {2, 0}}, virt = {{50, 0}, {100, 0}};
    if (setitimer(ITIMER_REAL, &real, NULL) || setitimer(ITIMER_VIRTUAL, &virt, NULL)) return 2;
    ready_then_await_go(getpid(), NULL);

    struct itimerval r, v, p;
    if (getitimer(ITIMER_REAL, &r) || getitimer(ITIMER_VIRTUAL, &v) || getitimer(ITIMER_PROF, &p))
        return fail("getitimer failed");
    char why[256];
    if (us(r.it_value) == 0) return fail("ITIMER_REAL is not armed");
    if (us(r.it_interval) != 1000000 || us(r.it_value) > 2000000) {
        snprintf(why, sizeof why, "ITIMER_REAL is interval %lld us, value %lld us", us(r.it_interval),
                 us(r.it_value));
        return fail(why);
    }
    if (us(v.it_value) == 0) return fail("ITIMER_VIRTUAL is not armed");
    /* CPU-time timers are rounded up to the scheduler tick (at most 10 ms with HZ=100). */
    if (us(v.it_interval) != 50000000 || us(v.it_value) > 100010000) {
        snprintf(why, sizeof why, "ITIMER_VIRTUAL is interval %lld us, value %lld us",
                 us(v.it_interval), us(v.it_value));
        return fail(why);
    }
    if (us(p.it_value) != 0 || us(p.it_interval) != 0) return fail("ITIMER_PROF is armed");
    int seen = alarms;
    double deadline = now() + 10;
    struct timespec ten_ms = {0, 10 * 1000 * 1000};
    while (alarms < seen + 2 && now() < deadline) nanosleep(&ten_ms, NULL);
    if (alarms < seen + 2) {
        snprintf(why, sizeof why, "%d SIGALRM in 10 s, expected 2", alarms - seen);
        return fail(why);
    }
    put("result", "PASS\n");
    return 0;
}
