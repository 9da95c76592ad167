/* Engine test program: shared anonymous memory across a process tree, as a preforking server
 * has it. The root maps one MAP_SHARED|MAP_ANONYMOUS object of 4 pages, fills it, and forks:
 *   C0: keeps the whole object and maps a second object of its own (one page, "solo");
 *   C1: moves pages 1-2 elsewhere (mremap) and unmaps pages 0 and 3: its one view starts at
 *       offset 4096 of the object;
 *   C2: unmaps pages 2-3: its view is pages 0-1.
 * After DIR/go every process checks the content written before the dump (through its view)
 * and that /proc/self/maps still names its view "/dev/zero (deleted)" at the right offset,
 * writes a marker into page 1 (which every view holds) and waits until it sees the markers of
 * all four: one object again. Then C1 and C2 write into pages only the root and C0 still map;
 * the root checks those after reaping the children.
 * Protocol as fdtable.c: DIR/ready (the root's pid), DIR/go, DIR/result, exit 0 or 1. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define PAGE 4096

/* The offset and name of the mapping holding addr, from /proc/self/maps; 0 if none. */
static int maps_of(const void *addr, unsigned long *off, char name[256]) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int found = 0;
    name[0] = 0;
    while (f && fgets(line, sizeof line, f)) {
        unsigned long s, e, o;
        char n[256] = "";
        if (sscanf(line, "%lx-%lx %*s %lx %*s %*s %255[^\n]", &s, &e, &o, n) < 3) continue;
        if ((unsigned long)addr >= s && (unsigned long)addr < e) {
            *off = o + ((unsigned long)addr - s);
            strcpy(name, n);
            found = 1;
        }
    }
    if (f) fclose(f);
    return found;
}

/* Checks that `view` shows page `page` of the object with its content from before the dump
 * (or `want`); returns a failure message or NULL. */
static char failure[512];
static int check_page(const char *view, int page, const char *want) {
    char expect[32], name[256];
    unsigned long off = 0;
    if (!want) {
        snprintf(expect, sizeof expect, "before-%d", page);
        want = expect;
    }
    if (strcmp(view, want)) {
        snprintf(failure, sizeof failure, "pid %d: page %d holds \"%.20s\", want \"%s\"", getpid(),
                 page, view, want);
        return 1;
    }
    if (!maps_of(view, &off, name) || !strstr(name, "/dev/zero (deleted)") ||
        off != (unsigned long)page * PAGE) {
        snprintf(failure, sizeof failure, "pid %d: page %d is mapped as \"%s\" at offset %#lx",
                 getpid(), page, name, off);
        return 1;
    }
    return 0;
}

/* Writes marker k into page 1 (seen through `page1`) and waits for all four. */
static int markers(char *page1, int k) {
    sprintf(page1 + 256 + 32 * k, "marker-%d", k);
    struct timespec ms = {0, 1000 * 1000};
    for (int tries = 0; tries < 60000; tries++) {
        int all = 1;
        for (int j = 0; j < 4; j++) {
            char want[16];
            sprintf(want, "marker-%d", j);
            if (strcmp(page1 + 256 + 32 * j, want)) all = 0;
        }
        if (all) return 0;
        nanosleep(&ms, NULL);
    }
    snprintf(failure, sizeof failure, "pid %d (%d): not every marker appeared in page 1",
             getpid(), k);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    dir = argv[1];
    root = getpid();
    char *a = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED) return 2;
    for (int i = 0; i < 4; i++) sprintf(a + i * PAGE, "before-%d", i);
    int ready[2];
    if (pipe(ready) < 0) return 2;
    pid_t kids[3];
    for (int k = 0; k < 3; k++) {
        kids[k] = fork();
        if (kids[k] < 0) return 2;
        if (kids[k]) continue;
        close(ready[0]);
        int bad = 0;
        if (k == 0) {
            char *solo = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
            if (solo == MAP_FAILED) _exit(3);
            strcpy(solo, "solo");
            if (write(ready[1], "x", 1) != 1) _exit(3);
            await_file("go", left_tree);
            bad |= strcmp(solo, "solo") != 0;
            if (bad) snprintf(failure, sizeof failure, "C0: its own object holds %.20s", solo);
            for (int i = 0; i < 4 && !bad; i++) bad |= check_page(a + i * PAGE, i, NULL);
            bad = bad || markers(a + PAGE, 1);
        } else if (k == 1) {
            char *v = mremap(a + PAGE, 2 * PAGE, 2 * PAGE, MREMAP_MAYMOVE);
            if (v == MAP_FAILED || munmap(a, PAGE) || munmap(a + 3 * PAGE, PAGE)) _exit(3);
            if (write(ready[1], "x", 1) != 1) _exit(3);
            await_file("go", left_tree);
            bad = check_page(v, 1, NULL) || check_page(v + PAGE, 2, NULL);
            bad = bad || markers(v, 2);
            /* Every process has checked the content: now change it. */
            if (!bad) strcpy(v + PAGE, "from-C1");
        } else {
            if (munmap(a + 2 * PAGE, 2 * PAGE)) _exit(3);
            if (write(ready[1], "x", 1) != 1) _exit(3);
            await_file("go", left_tree);
            bad = check_page(a, 0, NULL) || check_page(a + PAGE, 1, NULL);
            bad = bad || markers(a + PAGE, 3);
            if (!bad) strcpy(a, "from-C2");
        }
        if (bad) {
            fprintf(stderr, "FAIL: %s\n", failure);
            put(k == 0 ? "fail0" : k == 1 ? "fail1" : "fail2", failure);
        }
        _exit(bad ? 1 : 0);
    }
    close(ready[1]);
    char byte[3];
    size_t got = 0;
    while (got < 3) {
        ssize_t n = read(ready[0], byte, 3 - got);
        if (n <= 0) return 2;
        got += n;
    }
    ready_then_await_go(root, left_tree);

    char res[1024] = "";
    int bad = 0;
    for (int i = 0; i < 4 && !bad; i++) bad |= check_page(a + i * PAGE, i, NULL);
    bad = bad || markers(a + PAGE, 0);
    if (bad) snprintf(res, sizeof res, "FAIL: root: %s\n", failure);
    for (int k = 0; k < 3; k++) {
        int st = -1;
        if (waitpid(kids[k], &st, 0) != kids[k] || st != 0) {
            if (!res[0]) {
                char path[4200], why[512] = "";
                snprintf(path, sizeof path, "%s/fail%d", dir, k);
                FILE *f = fopen(path, "r");
                if (f) {
                    if (!fgets(why, sizeof why, f)) why[0] = 0;
                    fclose(f);
                }
                snprintf(res, sizeof res, "FAIL: C%d (%d) ended with status %#x: %s\n", k, kids[k],
                         st, why);
            }
        }
    }
    /* The children's writes into pages that only the root (and C0) still map. */
    if (!res[0] && strcmp(a + 2 * PAGE, "from-C1"))
        snprintf(res, sizeof res, "FAIL: page 2 holds \"%.20s\", not C1's write\n", a + 2 * PAGE);
    if (!res[0] && strcmp(a, "from-C2"))
        snprintf(res, sizeof res, "FAIL: page 0 holds \"%.20s\", not C2's write\n", a);
    if (!res[0])
        snprintf(res, sizeof res, "PASS root %d C0 %d C1 %d C2 %d\n", root, kids[0], kids[1],
                 kids[2]);
    put("result", res);
    return strncmp(res, "PASS", 4) == 0 ? 0 : 1;
}
