/* scenario-ns: the private mount namespace the scenario tests run in (tests/scenarios.rs).
 *
 * The scenarios of SCENARIOS.md change mounts. So that they can neither disturb each other nor the
 * machine, every test makes a mount namespace of its own and runs the scenario program, crcli dump
 * and crcli restore inside it. Rust test code may not use `unsafe` (no pre_exec), and unshare and
 * setns of a mount namespace need a single-threaded process, so this small C helper does it:
 *
 *   scenario-ns hold DIR        unshare(CLONE_NEWNS), make / recursively private (nothing propagates
 *                               to the host), write DIR/ns-ready (the pid) atomically, then sleep until
 *                               killed; it also dies with the thread that started it (PDEATHSIG).
 *                               The namespace outlives the scenario program: the live mounts a
 *                               scenario was set up from stay mounted while it is dumped, killed and
 *                               restored (the "host" flavour of SCENARIOS.md).
 *   scenario-ns enter PID LOG CMD [ARG...]
 *                               setns into /proc/PID/ns/mnt and exec CMD (absolute path). Unless LOG is
 *                               "-", stdin is reopened as /dev/null and stdout and stderr as LOG
 *                               (appending) *inside* the namespace, so that the program's own fds are
 *                               all on mounts of its namespace (fds opened by the test before would
 *                               sit on the test's mounts, which the namespace's mount table lacks).
 *                               Every other fd is closed (close_range) before the exec.
 *   scenario-ns enter-new PID LOG CMD [ARG...]
 *                               as enter, then unshare(CLONE_NEWNS) and make / recursively private:
 *                               CMD runs in a fresh copy of PID's namespace (a restore "run inside
 *                               unshare -m"); the copy dies with the last process in it.
 *
 * Exit status 2 with a message on stderr on any error. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "scenario-ns: %s: %s\n", what, strerror(errno));
	exit(2);
}

static _Noreturn void hold(const char *dir)
{
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
		die("prctl(PR_SET_PDEATHSIG)");
	if (unshare(CLONE_NEWNS) != 0)
		die("unshare(CLONE_NEWNS)");
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		die("making / recursively private");
	char path[PATH_MAX], tmp[PATH_MAX + 8], pid[32];
	if (snprintf(path, sizeof(path), "%s/ns-ready", dir) >= (int)sizeof(path)) {
		errno = ENAMETOOLONG;
		die("DIR");
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, pid, n) != n || close(fd) != 0 || rename(tmp, path) != 0)
		die("writing DIR/ns-ready");
	for (;;)
		pause();
}

static void reopen_stdio(const char *log)
{
	int in = open("/dev/null", O_RDONLY);
	int out = open(log, O_WRONLY | O_APPEND | O_CREAT, 0644);
	if (in < 0 || out < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
		die("reopening stdin/stdout/stderr");
	if (in > 2)
		close(in);
	if (out > 2)
		close(out);
}

static int enter(const char *pid, const char *log, int fresh, char **argv)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%s/ns/mnt", pid);
	int ns = open(path, O_RDONLY | O_CLOEXEC);
	if (ns < 0)
		die(path);
	if (setns(ns, CLONE_NEWNS) != 0)
		die("setns(CLONE_NEWNS)");
	close(ns);
	if (fresh) {
		if (unshare(CLONE_NEWNS) != 0)
			die("unshare(CLONE_NEWNS)");
		if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
			die("making / recursively private");
	}
	if (strcmp(log, "-") != 0)
		reopen_stdio(log);
	/* Nothing else leaks in from the test's environment. */
	if (syscall(SYS_close_range, 3u, ~0u, 0u) != 0)
		die("close_range");
	execv(argv[0], argv);
	die(argv[0]);
	return 2;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "hold") == 0)
		hold(argv[2]);
	if (argc >= 5 && strcmp(argv[1], "enter") == 0)
		return enter(argv[2], argv[3], 0, argv + 4);
	if (argc >= 5 && strcmp(argv[1], "enter-new") == 0)
		return enter(argv[2], argv[3], 1, argv + 4);
	fprintf(stderr, "usage: scenario-ns hold DIR | scenario-ns enter|enter-new PID LOG|- CMD [ARG...]\n");
	return 2;
}
