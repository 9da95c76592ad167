/* sigchld: a signal pending from a child's exit, and threads whose ids must survive.
 *
 * The program blocks SIGCHLD (before any thread exists, so every thread blocks it), forks a child
 * that exits with status 5 at once and waits until it is a zombie: SIGCHLD from that exit is now
 * pending in the process's shared queue, and the zombie waits to be reaped. Then it starts two
 * threads that record their thread ids (gettid) and sleep 5 ms per turn.
 *
 * After `go` it checks: SIGCHLD is pending, taking it (sigtimedwait, no wait) gives the child's
 * pid, CLD_EXITED and status 5; the child is reaped with status 5; each thread's gettid() is the
 * id it recorded; /proc/self/task lists exactly the process and the two recorded ids. All ids are
 * as the program sees them (in a PID namespace of its own: the namespace's ids, so a restore must
 * give every thread its id in the namespace; /proc must be that namespace's).
 *
 * Corrupt switches: sigchld (the pending SIGCHLD is taken early), tid (the recorded id of thread 0
 * is changed). */
#include "common.h"

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define NTHREADS 2

static pid_t tids[NTHREADS];
static volatile int started;
static volatile int stop;
static int tid_ok[NTHREADS];

static void *worker(void *arg)
{
	int i = (int)(long)arg;
	tids[i] = (pid_t)syscall(SYS_gettid);
	__atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
	while (!stop)
		e2e_sleep_ns(5 * 1000000LL);
	tid_ok[i] = (pid_t)syscall(SYS_gettid) == tids[i];
	return NULL;
}

/* Whether /proc/self/task lists exactly the process and the recorded thread ids. */
static void check_task_list(void)
{
	DIR *d = opendir("/proc/self/task");
	if (!E2E_CHECK(d != NULL, "opening /proc/self/task: %s", strerror(errno)))
		return;
	int seen = 0, unknown = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		pid_t t = (pid_t)atoi(e->d_name);
		seen++;
		if (t != getpid() && t != tids[0] && t != tids[1]) {
			e2e_failf("/proc/self/task lists thread %d, not one of %d %d %d", (int)t,
				  (int)getpid(), (int)tids[0], (int)tids[1]);
			unknown++;
		}
	}
	closedir(d);
	if (!unknown)
		E2E_CHECK(seen == 1 + NTHREADS, "/proc/self/task lists %d threads, expected %d", seen,
			  1 + NTHREADS);
}

int main(int argc, char **argv)
{
	e2e_init(argc, argv, "");
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &chld, NULL) != 0)
		E2E_DIE("blocking SIGCHLD: %s", strerror(errno));
	pid_t child = fork();
	if (child < 0)
		E2E_DIE("fork: %s", strerror(errno));
	if (child == 0)
		_exit(5);
	siginfo_t si;
	memset(&si, 0, sizeof si);
	if (waitid(P_PID, child, &si, WEXITED | WNOWAIT) != 0)
		E2E_DIE("waitid (WNOWAIT) for child %d: %s", (int)child, strerror(errno));
	pthread_t th[NTHREADS];
	for (long i = 0; i < NTHREADS; i++)
		if (pthread_create(&th[i], NULL, worker, (void *)i) != 0)
			E2E_DIE("pthread_create");
	while (__atomic_load_n(&started, __ATOMIC_SEQ_CST) < NTHREADS)
		e2e_sleep_ns(1000000);
	e2e_ready();
	e2e_wait_go(10);

	if (e2e_corrupt("sigchld")) {
		struct timespec zero = { 0, 0 };
		sigtimedwait(&chld, &si, &zero);
	}
	if (e2e_corrupt("tid"))
		tids[0] += 1000;
	sigset_t pending;
	sigemptyset(&pending);
	if (E2E_CHECK(sigpending(&pending) == 0 && sigismember(&pending, SIGCHLD) == 1,
		      "no SIGCHLD pending")) {
		struct timespec zero = { 0, 0 };
		memset(&si, 0, sizeof si);
		int sig = sigtimedwait(&chld, &si, &zero);
		E2E_CHECK(sig == SIGCHLD && si.si_pid == child && si.si_code == CLD_EXITED &&
				  si.si_status == 5,
			  "the pending SIGCHLD says signal %d pid %d code %d status %d, expected pid "
			  "%d CLD_EXITED status 5",
			  sig, (int)si.si_pid, si.si_code, si.si_status, (int)child);
	}
	int st = -1;
	pid_t r = waitpid(child, &st, 0);
	E2E_CHECK(r == child && WIFEXITED(st) && WEXITSTATUS(st) == 5,
		  "reaping child %d gave %d status %#x, expected exit status 5", (int)child, (int)r, st);
	check_task_list();
	stop = 1;
	for (int i = 0; i < NTHREADS; i++) {
		pthread_join(th[i], NULL);
		E2E_CHECK(tid_ok[i], "thread %d: gettid() is not its recorded id %d", i, (int)tids[i]);
	}
	e2e_finish();
}
