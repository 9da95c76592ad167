/* Engine test program: a process whose cwd, a directory fd, a file fd and the mount fd itself
 * are all on an anonymous tmpfs, and the file is also mapped shared, (fsmount, never attached anywhere): a lost superblock that only
 * the process reaches. After restore it checks the tree, the data, the positions, that all four
 * are on one mount (statx unique mount id), that this mount is in no mount table, that the
 * mount fd still opens files, and the tmpfs size. Changes no mount table.
 * Usage: anoncwd DIR. Protocol as fdtable.c (DIR/ready, DIR/go, DIR/result). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#define FSCONFIG_SET_STRING 1
#define FSCONFIG_CMD_CREATE 6
#define STATX_MNT_ID_UNIQUE 0x4000
#define TMPFS_MAGIC 0x01021994

static int dirfd_;

static void put(const char *name, const char *text) {
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%s.tmp", name);
    int fd = openat(dirfd_, tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, text, strlen(text)) < 0) _exit(2);
    close(fd);
    renameat(dirfd_, tmp, dirfd_, name);
}

static unsigned long long mnt_unique(int fd) {
    struct statx stx;
    if (statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID_UNIQUE, &stx) != 0) return 0;
    return stx.stx_mnt_id;
}

static int in_mountinfo(unsigned long long id_old) {
    FILE *f = fopen("/proc/self/mountinfo", "r");
    unsigned long long id;
    char line[4096];
    int found = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "%llu", &id) == 1 && id == id_old) found = 1;
    if (f) fclose(f);
    return found;
}

static const char DATA[] = "data on an anonymous tmpfs that only this process reaches";

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    dirfd_ = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int fs = syscall(SYS_fsopen, "tmpfs", 0);
    if (dirfd_ < 0 || fs < 0) { perror("fsopen"); return 2; }
    if (syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "size", "2m", 0) ||
        syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0)) { perror("fsconfig"); return 2; }
    int m = syscall(SYS_fsmount, fs, 0, 0);
    if (m < 0) { perror("fsmount"); return 2; }
    close(fs);
    if (mkdirat(m, "work", 0751) || mkdirat(m, "work/deep", 0700)) { perror("mkdir"); return 2; }
    int f = openat(m, "work/deep/f", O_RDWR | O_CREAT, 0640);
    if (f < 0 || write(f, DATA, sizeof DATA) != (ssize_t)sizeof DATA) { perror("file"); return 2; }
    lseek(f, 9, SEEK_SET);
    char *map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
    if (map == MAP_FAILED) { perror("mmap"); return 2; }
    int d = openat(m, "work", O_RDONLY | O_DIRECTORY);
    if (d < 0 || fchdir(d)) { perror("chdir"); return 2; }
    struct statfs sfs0;
    fstatfs(m, &sfs0);

    char buf[64];
    snprintf(buf, sizeof buf, "%d\n", getpid());
    put("ready", buf);
    while (faccessat(dirfd_, "go", F_OK, 0) != 0) usleep(10000);

    const char *problem = NULL;
    char got[sizeof DATA] = "";
    struct stat st, st2;
    struct statfs sfs;
    int g = open("deep/f", O_RDONLY | O_CLOEXEC);
    int h = openat(m, "work/deep/f", O_RDONLY | O_CLOEXEC);
    unsigned long long id = mnt_unique(m);
    if (g < 0 || read(g, got, sizeof got) != (ssize_t)sizeof DATA || memcmp(got, DATA, sizeof DATA))
        problem = "deep/f (through the cwd) lost its data";
    else if (h < 0 || fstat(h, &st) || fstat(g, &st2) || st.st_ino != st2.st_ino)
        problem = "the mount fd does not reach the file of the cwd";
    else if (memcmp(map, DATA, sizeof DATA))
        problem = "the shared mapping of work/deep/f lost its content";
    else if ((map[0] = 'D', pread(g, got, 1, 0) != 1 || got[0] != 'D'))
        problem = "a write through the shared mapping does not reach the file";
    else if (lseek(f, 0, SEEK_CUR) != 9)
        problem = "the file fd lost its position";
    else if (fstat(f, &st2) || st2.st_ino != st.st_ino || (st2.st_mode & 07777) != 0640)
        problem = "the file fd is not work/deep/f, or its mode changed";
    else if (fstatat(m, "work", &st, 0) || (st.st_mode & 07777) != 0751)
        problem = "work lost its mode";
    else if (id == 0 || mnt_unique(f) != id || mnt_unique(d) != id || mnt_unique(g) != id)
        problem = "the fds and the cwd are not on one mount";
    else if (fstatfs(m, &sfs) || sfs.f_type != TMPFS_MAGIC || sfs.f_blocks != sfs0.f_blocks)
        problem = "the mount fd is not a tmpfs of the same size";
    else {
        struct statx stx;
        if (statx(m, "", AT_EMPTY_PATH, STATX_MNT_ID, &stx) || in_mountinfo(stx.stx_mnt_id))
            problem = "the anonymous mount shows in /proc/self/mountinfo";
    }
    if (problem) {
        char msg[256];
        snprintf(msg, sizeof msg, "FAIL: %s\n", problem);
        put("result", msg);
        return 1;
    }
    put("result", "PASS\n");
    return 0;
}
