/* Helpers shared by the engine test programs (exitsig.c, family.c, nscheck.c, shmtree.c,
 * threaded.c, twin.c): the protocol's files in the program's directory. Included, never compiled
 * on its own: build.rs compiles the *.c files of this directory and reruns when anything in it
 * changes, this header too. */
#ifndef CRCLI_PROGS_COMMON_H
#define CRCLI_PROGS_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* The program's directory (argv[1]): DIR/ready, DIR/go, DIR/result live there. */
static const char *dir;

/* The root of a tree program (its pid when it starts; the restore keeps it). Unused by the
 * single-process programs. */
static pid_t root __attribute__((unused));

/* Writes DIR/NAME holding TEXT at once (through DIR/NAME.tmp, renamed): the test never reads a
 * half-written file. Exits 2 when it cannot. */
static inline void put(const char *name, const char *text) {
    char tmp[4200], path[4200];
    snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(tmp, "w");
    if (!f) exit(2);
    fputs(text, f);
    fclose(f);
    rename(tmp, path);
}

/* Waits, in turns of 10 ms, until DIR/NAME exists. Between turns, when give_up is not NULL and
 * says so, exits with status 99 (a process whose test failed must not outlive it). */
static inline void await_file(const char *name, int (*give_up)(void)) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct timespec ten_ms = {0, 10 * 1000 * 1000};
    while (access(path, F_OK) != 0) {
        if (give_up && give_up()) _exit(99);
        nanosleep(&ten_ms, NULL);
    }
}

/* Says it is ready (DIR/ready holding PID) and waits for DIR/go (await_file with give_up). */
static inline void ready_then_await_go(pid_t pid, int (*give_up)(void)) {
    char buf[64];
    snprintf(buf, sizeof buf, "%d\n", pid);
    put("ready", buf);
    await_file("go", give_up);
}

/* For await_file in a tree: this process is neither the root nor a child of it (its parent is
 * gone: a failed test). */
static inline int left_tree(void) { return getpid() != root && getppid() != root; }

#endif
