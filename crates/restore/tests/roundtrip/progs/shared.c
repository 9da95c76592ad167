/* Engine test program: one shared anonymous object (3 pages) seen through three mappings with
 * different protections, and a second, single-mapping object. After restore it checks the
 * content, the protections and names in /proc/self/maps, and that the views still share pages
 * (with each other and with a forked child).
 * Usage: shared DIR. Protocol as fdtable.c. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* The perms and name of the mapping holding addr, from /proc/self/maps. */
static void maps_of(void *addr, char perms[8], char name[256]) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    perms[0] = name[0] = 0;
    while (f && fgets(line, sizeof line, f)) {
        unsigned long s, e;
        char p[8], n[256] = "";
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %255[^\n]", &s, &e, p, n) < 3) continue;
        if ((unsigned long)addr >= s && (unsigned long)addr < e) {
            strcpy(perms, p);
            strcpy(name, n);
        }
    }
    if (f) fclose(f);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    char *a = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    char *b = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED || b == MAP_FAILED) return 2;
    strcpy(a, "page zero");
    strcpy(a + 4096, "page one");
    strcpy(a + 8192, "page two");
    strcpy(b, "lonely");
    mprotect(a + 4096, 4096, PROT_READ);
    mprotect(a + 8192, 4096, PROT_NONE);

    char path[4200], tmp[4200];
    snprintf(tmp, sizeof tmp, "%s/ready.tmp", argv[1]);
    snprintf(path, sizeof path, "%s/ready", argv[1]);
    FILE *f = fopen(tmp, "w");
    fprintf(f, "%d\n", getpid());
    fclose(f);
    rename(tmp, path);
    snprintf(path, sizeof path, "%s/go", argv[1]);
    while (access(path, F_OK) != 0) usleep(10000);

    char perms[8], name[256];
    const char *want_perms[3] = {"rw-s", "r--s", "---s"};
    for (int i = 0; i < 3; i++) {
        maps_of(a + i * 4096, perms, name);
        if (strcmp(perms, want_perms[i])) fail("view %d has perms %s, want %s", i, perms, want_perms[i]);
        if (!strstr(name, "/dev/zero")) fail("view %d is %s, not /dev/zero (deleted)", i, name);
    }
    mprotect(a + 8192, 4096, PROT_READ | PROT_WRITE);
    mprotect(a + 4096, 4096, PROT_READ | PROT_WRITE);
    if (strcmp(a, "page zero") || strcmp(a + 4096, "page one") || strcmp(a + 8192, "page two"))
        fail("content %s / %s / %s", a, a + 4096, a + 8192);
    if (strcmp(b, "lonely")) fail("second object content %s", b);
    /* One object: a second mapping of its middle page must see writes through the first. */
    char *again = mremap(a + 4096, 0, 4096, MREMAP_MAYMOVE);
    if (again == MAP_FAILED) fail("mremap of a view failed");
    else {
        strcpy(a + 4096, "written");
        if (strcmp(again, "written")) fail("the views are not one object any more");
    }
    pid_t c = fork();
    if (c == 0) {
        strcpy(a + 8192, "from child");
        strcpy(b, "child too");
        _exit(0);
    }
    waitpid(c, NULL, 0);
    if (strcmp(a + 8192, "from child") || strcmp(b, "child too")) fail("a child's writes are not shared");

    snprintf(tmp, sizeof tmp, "%s/result.tmp", argv[1]);
    snprintf(path, sizeof path, "%s/result", argv[1]);
    f = fopen(tmp, "w");
    if (failures) fprintf(f, "FAIL: %s (%d failed checks)\n", first_failure, failures);
    else fprintf(f, "PASS\n");
    fclose(f);
    rename(tmp, path);
    return failures ? 1 : 0;
}
