/* Engine test program for trees and namespaces: after DIR/go it reads DIR/expect
 * ("PID PPID HOSTNAME DOMAINNAME ZPID ZSTATUS ZPGID NOTIPC", '-' for a name that must not be
 * checked, ZPID 0 for no zombie) and checks its own pid and parent pid (as it sees them), its
 * host and domain name, that it has a zombie child ZPID in process group ZPGID which exited with
 * waitpid status ZSTATUS, and that its IPC namespace (/proc/self/ns/ipc) is not NOTIPC. Protocol as fdtable.c: DIR/ready (its pid), DIR/go, DIR/result
 * ("PASS" or "FAIL: ..."), exit 0 or 1. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    dir = argv[1];
    char path[4200];
    ready_then_await_go(getpid(), NULL);

    snprintf(path, sizeof path, "%s/expect", dir);
    FILE *f = fopen(path, "r");
    int pid, ppid, zpid, zstatus, zpgid;
    char host[128], domain[128], notipc[128];
    if (!f || fscanf(f, "%d %d %127s %127s %d %d %d %127s", &pid, &ppid, host, domain, &zpid,
                     &zstatus, &zpgid, notipc) != 8) {
        put("result", "FAIL: cannot read DIR/expect\n");
        return 1;
    }
    fclose(f);
    char res[1024] = "";
    if (getpid() != pid)
        snprintf(res, sizeof res, "FAIL: getpid() is %d, expected %d\n", getpid(), pid);
    else if (getppid() != ppid)
        snprintf(res, sizeof res, "FAIL: getppid() is %d, expected %d\n", getppid(), ppid);
    struct utsname u;
    char dn[256] = "";
    uname(&u);
    getdomainname(dn, sizeof dn);
    if (!res[0] && strcmp(host, "-") != 0 && strcmp(u.nodename, host) != 0)
        snprintf(res, sizeof res, "FAIL: host name %s, expected %s\n", u.nodename, host);
    if (!res[0] && strcmp(domain, "-") != 0 && strcmp(dn, domain) != 0)
        snprintf(res, sizeof res, "FAIL: domain name %s, expected %s\n", dn, domain);
    char ipc[128] = "";
    ssize_t n = readlink("/proc/self/ns/ipc", ipc, sizeof ipc - 1);
    if (n > 0) ipc[n] = 0;
    if (!res[0] && strcmp(ipc, notipc) == 0)
        snprintf(res, sizeof res, "FAIL: still in IPC namespace %s\n", ipc);
    if (!res[0] && zpid > 0) {
        int g = getpgid(zpid);
        int st = -1;
        pid_t w = waitpid(zpid, &st, WNOHANG);
        if (g != zpgid)
            snprintf(res, sizeof res, "FAIL: zombie %d is in group %d, expected %d\n", zpid, g, zpgid);
        else if (w != zpid)
            snprintf(res, sizeof res, "FAIL: waitpid(%d, WNOHANG) gave %d, not a zombie\n", zpid, w);
        else if (st != zstatus)
            snprintf(res, sizeof res, "FAIL: zombie %d status %#x, expected %#x\n", zpid, st, zstatus);
    }
    if (!res[0])
        snprintf(res, sizeof res, "PASS pid %d ppid %d host %s domain %s zombie %d\n", getpid(),
                 getppid(), u.nodename, dn, zpid);
    put("result", res);
    return strncmp(res, "PASS", 4) == 0 ? 0 : 1;
}
