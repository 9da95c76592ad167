/* Engine test program: a process that chroot()ed into DIR/root and works in DIR/root/sub.
 * After restore it checks that / and . are those directories again (by inode).
 * Usage: rooted DIR. Protocol as fdtable.c, through a directory fd kept on DIR. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int dirfd_;

static void put(const char *name, const char *text) {
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%s.tmp", name);
    int fd = openat(dirfd_, tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, text, strlen(text)) < 0) _exit(2);
    close(fd);
    renameat(dirfd_, tmp, dirfd_, name);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    dirfd_ = open(argv[1], O_RDONLY | O_DIRECTORY);
    if (dirfd_ < 0 || mkdirat(dirfd_, "root", 0755) || mkdirat(dirfd_, "root/sub", 0755)) return 2;
    struct stat root_st, sub_st;
    if (fstatat(dirfd_, "root", &root_st, 0) || fstatat(dirfd_, "root/sub", &sub_st, 0)) return 2;
    char path[4200];
    snprintf(path, sizeof path, "%s/root", argv[1]);
    if (chdir(path) || chroot(".") || chdir("/sub")) { perror("chroot"); return 2; }
    char buf[64];
    snprintf(buf, sizeof buf, "%d\n", getpid());
    put("ready", buf);
    while (faccessat(dirfd_, "go", F_OK, 0) != 0) usleep(10000);
    struct stat st;
    char cwd[256] = "";
    const char *problem = NULL;
    if (stat("/", &st) || st.st_ino != root_st.st_ino || st.st_dev != root_st.st_dev) problem = "/ is not DIR/root";
    else if (stat(".", &st) || st.st_ino != sub_st.st_ino) problem = ". is not DIR/root/sub";
    else if (!getcwd(cwd, sizeof cwd) || strcmp(cwd, "/sub")) problem = "getcwd is not /sub";
    if (problem) {
        char msg[128];
        snprintf(msg, sizeof msg, "FAIL: %s (cwd %s)\n", problem, cwd);
        put("result", msg);
        return 1;
    }
    put("result", "PASS\n");
    return 0;
}
