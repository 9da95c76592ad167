/* Engine test program: sleeps PERIOD_MS per turn (clock_nanosleep, CLOCK_MONOTONIC, relative)
 * and measures every sleep; after DIR/go it checks that no sleep was shorter than the period
 * (restores must not turn sleeps into busy loops) and that its counter kept counting.
 * Usage: chain DIR PERIOD_MS. Protocol as fdtable.c. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    const char *dir = argv[1];
    long period_ms = atol(argv[2]);
    char path[4200], tmp[4200];
    snprintf(tmp, sizeof tmp, "%s/ready.tmp", dir);
    snprintf(path, sizeof path, "%s/ready", dir);
    FILE *f = fopen(tmp, "w");
    fprintf(f, "%d\n", getpid());
    fclose(f);
    rename(tmp, path);
    snprintf(path, sizeof path, "%s/go", dir);
    long turns = 0, short_sleeps = 0;
    long long min_ns = -1, period_ns = period_ms * 1000000LL;
    struct timespec req = {period_ms / 1000, (period_ms % 1000) * 1000000L};
    while (access(path, F_OK) != 0) {
        long long t0 = now_ns();
        clock_nanosleep(CLOCK_MONOTONIC, 0, &req, NULL);
        long long d = now_ns() - t0;
        if (d < period_ns) short_sleeps++;
        if (min_ns < 0 || d < min_ns) min_ns = d;
        turns++;
    }
    snprintf(tmp, sizeof tmp, "%s/result.tmp", dir);
    snprintf(path, sizeof path, "%s/result", dir);
    f = fopen(tmp, "w");
    if (short_sleeps || turns < 2)
        fprintf(f, "FAIL: %ld of %ld sleeps shorter than %ld ms (shortest %lld us)\n", short_sleeps, turns, period_ms, min_ns / 1000);
    else
        fprintf(f, "PASS %ld turns, shortest sleep %lld us\n", turns, min_ns / 1000);
    fclose(f);
    rename(tmp, path);
    return short_sleeps ? 1 : 0;
}
