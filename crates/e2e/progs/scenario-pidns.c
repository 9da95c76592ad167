/* scenario-pidns: the "ns" flavour of SCENARIOS.md (tests/scenarios.rs, Flavour::Ns).
 *
 *   scenario-pidns HOLDPID LOG CMD [ARG...]
 *       setns into the mount namespace of HOLDPID (the scenario's private namespace, made by
 *       `scenario-ns hold`), then unshare(CLONE_NEWNS | CLONE_NEWPID) and make / recursively
 *       private: a mount namespace of the program's own, a copy of the scenario's, which dies with
 *       it. Then fork: the child is PID 1 of the new PID namespace; it mounts a proc of that
 *       namespace on /proc, reopens stdin as /dev/null and stdout/stderr as LOG (appending) inside
 *       the new namespace, closes every other fd and execs CMD (absolute path). The parent stays
 *       outside the PID namespace and waits for the child: it exits with the child's status, or is
 *       killed by the same signal, so the test sees the program's end. The program gets
 *       CRCLI_SCENARIO_NS=1 in its environment (its filesystems are made again at restore). The tests find the child
 *       (the program) as the parent's only child.
 *
 * Exit status 2 with a message on stderr on any error. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "scenario-pidns: %s: %s\n", what, strerror(errno));
	exit(2);
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: scenario-pidns HOLDPID LOG CMD [ARG...]\n");
		return 2;
	}
	char path[64];
	snprintf(path, sizeof(path), "/proc/%s/ns/mnt", argv[1]);
	int ns = open(path, O_RDONLY | O_CLOEXEC);
	if (ns < 0)
		die(path);
	if (setns(ns, CLONE_NEWNS) != 0)
		die("setns(CLONE_NEWNS)");
	close(ns);
	if (unshare(CLONE_NEWNS | CLONE_NEWPID) != 0)
		die("unshare(CLONE_NEWNS | CLONE_NEWPID)");
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		die("making / recursively private");
	pid_t child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
			die("prctl(PR_SET_PDEATHSIG)");
		if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
			die("mounting the PID namespace's proc on /proc");
		int in = open("/dev/null", O_RDONLY);
		int out = open(argv[2], O_WRONLY | O_APPEND | O_CREAT, 0644);
		if (in < 0 || out < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
			die("reopening stdin/stdout/stderr");
		if (syscall(SYS_close_range, 3u, ~0u, 0u) != 0)
			die("close_range");
		if (setenv("CRCLI_SCENARIO_NS", "1", 1) != 0)
			die("setenv");
		execv(argv[3], argv + 3);
		die(argv[3]);
	}
	/* The parent keeps nothing of the test's open. */
	syscall(SYS_close_range, 3u, ~0u, 0u);
	int status;
	while (waitpid(child, &status, 0) < 0)
		if (errno != EINTR)
			die("waitpid");
	if (WIFSIGNALED(status)) {
		signal(WTERMSIG(status), SIG_DFL);
		raise(WTERMSIG(status));
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 2;
}
