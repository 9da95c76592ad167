/* Engine test program for trees made of copies of one process: it holds DIR/data
 * ("0123456789") open at fd 7 and a pipe holding "xyz" at fds 8 (read) and 9 (write). After
 * DIR/go every copy reads one byte through fd 7 and one from the pipe and writes DIR/result-PID
 * ("PID PPID PGRP SID BYTE PIPEBYTE"), then reaps its children (if any) and exits 0. Copies that share one open file description read different bytes. A copy whose parent is
 * gone (a failed test) exits instead of waiting forever. Writes DIR/ready (its pid) first. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

/* For await_file: the copy's parent is gone (a failed test). */
static int orphaned(void) { return getppid() == 1; }

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    dir = argv[1];
    char path[4200], buf[256];
    snprintf(path, sizeof path, "%s/data", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, "0123456789", 10) != 10 || lseek(fd, 0, SEEK_SET) != 0) return 2;
    if (dup2(fd, 7) != 7) return 2;
    close(fd);
    int p[2];
    if (pipe(p) < 0 || dup2(p[0], 8) != 8 || dup2(p[1], 9) != 9 || write(9, "xyz", 3) != 3) return 2;
    close(p[0]);
    close(p[1]);
    ready_then_await_go(getpid(), orphaned);
    char c = '?';
    if (read(7, &c, 1) != 1) c = '!';
    char d = '?';
    if (read(8, &d, 1) != 1) d = '!';
    snprintf(buf, sizeof buf, "%d %d %d %d %c %c\n", getpid(), getppid(), getpgrp(), getsid(0), c, d);
    char name[64];
    snprintf(name, sizeof name, "result-%d", getpid());
    put(name, buf);
    while (wait(NULL) > 0) {
    }
    return 0;
}
